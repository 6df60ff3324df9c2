// Package storetest checks an objstore.Store against the contract, after
// restic's backend tests: one suite, run against every implementation (the
// in-memory store, the S3 client on each test server, the embedded
// quickstart store, and the decorators), so that they cannot drift apart.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// Run runs the suite. newStore returns an empty store for one subtest.
func Run(t *testing.T, newStore func(t *testing.T) objstore.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, st objstore.Store)
	}{
		{"PutGet", testPutGet},
		{"RangedGet", testRangedGet},
		{"EmptyObject", testEmptyObject},
		{"Replace", testReplace},
		{"FailedPutKeepsTheOldObject", testFailedPut},
		{"HeadAndMetadata", testHead},
		{"Missing", testMissing},
		{"Copy", testCopy},
		{"CopyOntoItselfReplacesMetadata", testCopyOntoItself},
		{"Delete", testDelete},
		{"DeleteMany", testDeleteMany},
		{"List", testList},
		{"ListRecursive", testListRecursive},
		{"ListStopsEarly", testListStopsEarly},
		{"Lookup", testLookup},
		{"AwkwardKeys", testAwkwardKeys},
		{"SumsItVouchesForMatch", testSums},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t)) })
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func put(t *testing.T, st objstore.Store, key string, data []byte, meta map[string]string) {
	t.Helper()
	if err := st.Put(ctx(t), key, bytes.NewReader(data), int64(len(data)), meta); err != nil {
		t.Fatalf("put %q: %v", key, err)
	}
}

func get(t *testing.T, st objstore.Store, key string, off, n int64) []byte {
	t.Helper()
	body, err := st.Get(ctx(t), key, off, n)
	size := body.Len
	if err != nil {
		t.Fatalf("get %q [%d,+%d): %v", key, off, n, err)
	}
	defer body.Close()
	b, err := io.ReadAll(body)
	if err != nil {
		t.Fatalf("read %q: %v", key, err)
	}
	if int64(len(b)) != size {
		t.Errorf("get %q: body of %d bytes, declared %d", key, len(b), size)
	}
	return b
}

func list(t *testing.T, st objstore.Store, prefix string, recursive bool) []objstore.Entry {
	t.Helper()
	var out []objstore.Entry
	if err := st.List(ctx(t), prefix, recursive, func(e objstore.Entry) bool {
		out = append(out, e)
		return true
	}); err != nil {
		t.Fatalf("list %q: %v", prefix, err)
	}
	return out
}

func names(es []objstore.Entry) string {
	var s []string
	for _, e := range es {
		n := e.Name
		if e.Dir {
			n += "/"
		}
		s = append(s, n)
	}
	return strings.Join(s, " ")
}

func testPutGet(t *testing.T, st objstore.Store) {
	data := bytes.Repeat([]byte("0123456789"), 10_000)
	put(t, st, "a/b/c", data, nil)
	if got := get(t, st, "a/b/c", 0, -1); !bytes.Equal(got, data) {
		t.Errorf("got %d bytes back, put %d", len(got), len(data))
	}
}

func testRangedGet(t *testing.T, st objstore.Store) {
	data := []byte("0123456789abcdef")
	put(t, st, "r", data, nil)
	for _, c := range []struct {
		off, n int64
		want   string
	}{
		{0, 4, "0123"},
		{10, -1, "abcdef"},
		{12, 100, "cdef"}, // a range past the end ends at the end
		{15, 1, "f"},
	} {
		if got := string(get(t, st, "r", c.off, c.n)); got != c.want {
			t.Errorf("get [%d,+%d) = %q, want %q", c.off, c.n, got, c.want)
		}
	}
}

func testEmptyObject(t *testing.T, st objstore.Store) {
	put(t, st, "empty", nil, nil)
	if got := get(t, st, "empty", 0, -1); len(got) != 0 {
		t.Errorf("empty object read back as %d bytes", len(got))
	}
	o, err := st.Head(ctx(t), "empty")
	if err != nil || o.Size != 0 {
		t.Errorf("head of an empty object: %+v, %v", o, err)
	}
}

func testReplace(t *testing.T, st objstore.Store) {
	put(t, st, "k", []byte("first version"), map[string]string{"mode": "33188"})
	put(t, st, "k", []byte("second"), map[string]string{"uid": "7"})
	if got := get(t, st, "k", 0, -1); string(got) != "second" {
		t.Errorf("after a replace: %q", got)
	}
	o, err := st.Head(ctx(t), "k")
	if err != nil {
		t.Fatal(err)
	}
	if o.Size != 6 || o.Meta["uid"] != "7" || o.Meta["mode"] != "" {
		t.Errorf("after a replace: %+v (metadata replaced whole, not merged)", o)
	}
}

// failingReader fails after its first half, like a data file that a disk
// error cuts short mid-upload.
type failingReader struct{ data []byte }

func (f failingReader) ReadAt(b []byte, off int64) (int, error) {
	if off >= int64(len(f.data))/2 {
		return 0, errors.New("injected read error")
	}
	n := copy(b, f.data[off:int64(len(f.data))/2])
	return n, nil
}

func testFailedPut(t *testing.T, st objstore.Store) {
	put(t, st, "k", []byte("old"), nil)
	data := bytes.Repeat([]byte("x"), 64<<10)
	if err := st.Put(ctx(t), "k", failingReader{data}, int64(len(data)), nil); err == nil {
		t.Fatal("a put whose body failed reported success")
	}
	if got := get(t, st, "k", 0, -1); string(got) != "old" {
		t.Errorf("after a failed put: %d bytes, want the old object", len(got))
	}
}

func testHead(t *testing.T, st objstore.Store) {
	meta := map[string]string{"uid": "1000", "gid": "1001", "mode": "33184", "mtime": "1580702706.5"}
	before := time.Now().Add(-time.Hour)
	put(t, st, "h", []byte("12345"), meta)
	o, err := st.Head(ctx(t), "h")
	if err != nil {
		t.Fatal(err)
	}
	if o.Size != 5 {
		t.Errorf("size %d, want 5", o.Size)
	}
	if o.MTime.Before(before) || o.MTime.After(time.Now().Add(time.Hour)) {
		t.Errorf("mtime %v is not about now", o.MTime)
	}
	for k, v := range meta {
		if o.Meta[k] != v {
			t.Errorf("metadata %q = %q, want %q (all: %v)", k, o.Meta[k], v, o.Meta)
		}
	}
	// A GET's headers say as much: a cold read needs no HEAD.
	body, err := st.Get(ctx(t), "h", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	body.Close()
	if body.Size != 5 || !body.MTime.Equal(o.MTime) {
		t.Errorf("GET: size %d, mtime %v; HEAD said %d, %v", body.Size, body.MTime, o.Size, o.MTime)
	}
	for k, v := range meta {
		if body.Meta[k] != v {
			t.Errorf("GET's metadata %q = %q, want %q (all: %v)", k, body.Meta[k], v, body.Meta)
		}
	}
}

// A missing object is ErrNotExist, and only that: not permanent, so that
// nothing retries or reports it as a failure.
func testMissing(t *testing.T, st objstore.Store) {
	c := ctx(t)
	check := func(op string, err error) {
		t.Helper()
		if !objstore.IsNotExist(err) {
			t.Errorf("%s of a missing object: %v, want ErrNotExist", op, err)
		}
		if objstore.IsPermanent(err) {
			t.Errorf("%s of a missing object is permanent: %v", op, err)
		}
	}
	_, err := st.Head(c, "nope")
	check("head", err)
	body, err := st.Get(c, "nope", 0, -1)
	if err == nil {
		body.Close()
	}
	check("get", err)
	check("copy", st.Copy(c, "nope", "nope2", nil))
	if err := st.Delete(c, "nope"); err != nil {
		t.Errorf("delete of a missing object: %v, want no error", err)
	}
	f, err := st.Lookup(c, "nope", nil)
	if err != nil || f.File || f.Dir {
		t.Errorf("lookup of nothing: %+v, %v", f, err)
	}
	if es := list(t, st, "nope/", false); len(es) != 0 {
		t.Errorf("list of nothing: %v", names(es))
	}
}

func testCopy(t *testing.T, st objstore.Store) {
	put(t, st, "from/x", []byte("bytes"), map[string]string{"mode": "33188"})
	if err := st.Copy(ctx(t), "from/x", "to/y", map[string]string{"mode": "33261", "uid": "5"}); err != nil {
		t.Fatal(err)
	}
	if got := get(t, st, "to/y", 0, -1); string(got) != "bytes" {
		t.Errorf("copy holds %q", got)
	}
	o, err := st.Head(ctx(t), "to/y")
	if err != nil || o.Meta["mode"] != "33261" || o.Meta["uid"] != "5" {
		t.Errorf("copy's metadata: %v, %v", o.Meta, err)
	}
	if o, err := st.Head(ctx(t), "from/x"); err != nil || o.Meta["mode"] != "33188" {
		t.Errorf("the source after a copy: %v, %v", o.Meta, err)
	}
}

func testCopyOntoItself(t *testing.T, st objstore.Store) {
	data := bytes.Repeat([]byte("m"), 100_000)
	put(t, st, "self", data, map[string]string{"mode": "33188"})
	if err := st.Copy(ctx(t), "self", "self", map[string]string{"mode": "33152"}); err != nil {
		t.Fatal(err)
	}
	o, err := st.Head(ctx(t), "self")
	if err != nil || o.Meta["mode"] != "33152" || o.Size != int64(len(data)) {
		t.Errorf("after a copy onto itself: %+v, %v", o, err)
	}
	if got := get(t, st, "self", 0, -1); !bytes.Equal(got, data) {
		t.Errorf("bytes after a copy onto itself: %d, want %d", len(got), len(data))
	}
}

func testDelete(t *testing.T, st objstore.Store) {
	put(t, st, "d/x", []byte("x"), nil)
	if err := st.Delete(ctx(t), "d/x"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Head(ctx(t), "d/x"); !objstore.IsNotExist(err) {
		t.Errorf("head after delete: %v", err)
	}
	if es := list(t, st, "d/", true); len(es) != 0 {
		t.Errorf("listed after delete: %v", names(es))
	}
}

// testDeleteMany checks a store that deletes in batches (BatchDeleter):
// every key named goes, a missing one is no failure, and a batch over
// MaxDeleteBatch is refused whole.
func testDeleteMany(t *testing.T, st objstore.Store) {
	bd, ok := st.(objstore.BatchDeleter)
	if !ok {
		t.Skip("the store deletes one key a request")
	}
	for _, k := range []string{"dm/a", "dm/b", "dm/c/d", "dm/keep"} {
		put(t, st, k, []byte(k), nil)
	}
	failed, err := bd.DeleteMany(ctx(t), []string{"dm/a", "dm/b", "dm/c/d", "dm/never-was"})
	if errors.Is(err, errors.ErrUnsupported) {
		t.Skip("the store says it has no DeleteObjects")
	}
	if err != nil || len(failed) != 0 {
		t.Fatalf("delete many: %v, failed %v", err, failed)
	}
	if got := names(list(t, st, "dm/", true)); got != "keep" {
		t.Errorf("after deleting many: %q left, want keep", got)
	}
	if failed, err := bd.DeleteMany(ctx(t), nil); err != nil || len(failed) != 0 {
		t.Errorf("deleting none: %v, failed %v", err, failed)
	}
	tooMany := make([]string, objstore.MaxDeleteBatch+1)
	for i := range tooMany {
		tooMany[i] = fmt.Sprintf("dm/many/%d", i)
	}
	if _, err := bd.DeleteMany(ctx(t), append(tooMany, "dm/keep")); err == nil {
		t.Error("a batch over MaxDeleteBatch was taken")
	}
	if _, err := st.Head(ctx(t), "dm/keep"); err != nil {
		t.Errorf("a refused batch deleted: %v", err)
	}
}

func testList(t *testing.T, st objstore.Store) {
	for _, k := range []string{"l/b", "l/a", "l/c/1", "l/c/2", "l/d/e/f", "other"} {
		put(t, st, k, []byte(k), nil)
	}
	es := list(t, st, "l/", false)
	if got, want := names(es), "a b c/ d/"; got != want {
		t.Errorf("list: %q, want %q (in key order, directories once)", got, want)
	}
	for _, e := range es {
		if !e.Dir && (e.Size != 3 || e.MTime.IsZero()) {
			t.Errorf("entry %q: size %d, mtime %v", e.Name, e.Size, e.MTime)
		}
	}
}

func testListRecursive(t *testing.T, st objstore.Store) {
	for _, k := range []string{"t/z", "t/a/b/c", "t/a/x", "u/no"} {
		put(t, st, k, []byte("12"), nil)
	}
	es := list(t, st, "t/", true)
	if got, want := names(es), "a/b/c a/x z"; got != want {
		t.Errorf("recursive list: %q, want %q", got, want)
	}
	for _, e := range es {
		if e.Dir || e.Size != 2 {
			t.Errorf("recursive entry %+v: want objects of 2 bytes only", e)
		}
	}
}

func testListStopsEarly(t *testing.T, st objstore.Store) {
	for _, k := range []string{"s/1", "s/2", "s/3"} {
		put(t, st, k, nil, nil)
	}
	calls := 0
	if err := st.List(ctx(t), "s/", false, func(objstore.Entry) bool {
		calls++
		return false
	}); err != nil {
		t.Fatal(err)
	}
	if calls != 1 {
		t.Errorf("fn called %d times after returning false, want 1", calls)
	}
}

func testLookup(t *testing.T, st objstore.Store) {
	put(t, st, "lk/file", []byte("1234567"), nil)
	put(t, st, "lk/dir/x", []byte("1"), nil)
	put(t, st, "lk/dir/sub/y", []byte("22"), nil)
	put(t, st, "lk/dir.sibling", []byte("3"), nil) // sorts between "lk/dir" and "lk/dir/"
	for _, c := range []struct {
		key       string
		file, dir bool
		size      int64
		below     []string
	}{
		{"lk/file", true, false, 7, nil},
		{"lk/dir", false, true, 0, []string{"sub/y=2", "x=1"}},
		{"lk/none", false, false, 0, nil},
		{"lk", false, true, 0, nil},
	} {
		var below []string
		f, err := st.Lookup(ctx(t), c.key, func(e objstore.Entry) {
			below = append(below, fmt.Sprintf("%s=%d", e.Name, e.Size))
		})
		if err != nil {
			t.Fatalf("lookup %q: %v", c.key, err)
		}
		if f.File != c.file || f.Dir != c.dir || f.Size != c.size {
			t.Errorf("lookup %q: %+v, want file=%v dir=%v size=%d", c.key, f, c.file, c.dir, c.size)
		}
		if c.below != nil {
			slices.Sort(below)
			if !f.Complete || !slices.Equal(below, c.below) {
				t.Errorf("lookup %q: below %v complete %v, want %v complete", c.key, below, f.Complete, c.below)
			}
		}
	}
}

// Keys with characters that need escaping somewhere between here and the
// store (in a URL, in XML, in a copy source) come back as they went in.
func testAwkwardKeys(t *testing.T, st objstore.Store) {
	keys := []string{"k/a b", "k/plus+sign", "k/per%25cent", "k/q?mark", "k/hash#", "k/amp&eq=", "k/ünï©ødé", "k/tab\tx", "k/<xml>'\""}
	for _, k := range keys {
		put(t, st, k, []byte(k), nil)
	}
	es := list(t, st, "k/", false)
	var got []string
	for _, e := range es {
		got = append(got, "k/"+e.Name)
	}
	want := slices.Clone(keys)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("listed %q, put %q", got, want)
	}
	for _, k := range keys {
		if b := get(t, st, k, 0, -1); string(b) != k {
			t.Errorf("%q read back %q", k, b)
		}
		if err := st.Copy(ctx(t), k, k+".copy", nil); err != nil {
			t.Errorf("copy %q: %v", k, err)
		}
		if _, err := st.Head(ctx(t), k+".copy"); err != nil {
			t.Errorf("head of the copy of %q: %v", k, err)
		}
	}
}

// testSums: a checksum the store vouches for (a full-object checksum, an
// ETag taken as an MD5) is the bytes', on GET and on HEAD; a range says
// the whole object's size. The cache refuses bytes that fail such a sum,
// so a store that gave a wrong one would make every read fail.
func testSums(t *testing.T, st objstore.Store) {
	data := bytes.Repeat([]byte("checked bytes "), 3000)
	put(t, st, "sum/a", data, nil)
	check := func(how string, s objstore.Sum) {
		t.Helper()
		if s.IsZero() {
			t.Logf("%s vouches for nothing: the cache checks length alone", how)
			return
		}
		h := s.New()
		h.Write(data)
		if !s.Matches(h) {
			t.Errorf("%s vouches for %s, which the bytes do not give", how, s)
		}
	}
	body, err := st.Get(ctx(t), "sum/a", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	body.Close()
	if body.Size != int64(len(data)) {
		t.Errorf("GET says the object has %d bytes, not %d", body.Size, len(data))
	}
	check("GET", body.Sum)
	o, err := st.Head(ctx(t), "sum/a")
	if err != nil {
		t.Fatal(err)
	}
	check("HEAD", o.Sum)
	body, err = st.Get(ctx(t), "sum/a", 100, 50)
	if err != nil {
		t.Fatal(err)
	}
	body.Close()
	if body.Len != 50 || (body.Size != -1 && body.Size != int64(len(data))) {
		t.Errorf("a range of 50 bytes: %d bytes of an object of %d", body.Len, body.Size)
	}
}
