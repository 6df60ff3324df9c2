// Owner, mode, times and special files as object metadata: kept, sent with
// the object, updated without resending bytes, read back on another host;
// the root's own attributes; small files fetched ahead with their metadata.

package cache

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// statOK stats p or fails the test.
func statOK(t *testing.T, c *Cache, p string) Attr {
	t.Helper()
	a, err := c.Stat(context.Background(), p)
	if err != nil {
		t.Fatalf("stat %s: %v", p, err)
	}
	return a
}

// wantPerm checks the owner and permission bits of a.
func wantPerm(t *testing.T, what string, a Attr, uid, gid, mode uint32) {
	t.Helper()
	if !a.ModeSet || a.Mode != mode {
		t.Errorf("%s: mode %o (set %v), want %o", what, a.Mode, a.ModeSet, mode)
	}
	if a.Owner == nil || a.Owner.UID != uid || a.Owner.GID != gid {
		t.Errorf("%s: owner %+v, want %d:%d", what, a.Owner, uid, gid)
	}
}

// The permission bits 0 are bits like any other (open(2) with mode 0 is
// how `mv -f` makes a file), and survive the upload and a revalidation.
func TestModeZeroIsKept(t *testing.T) {
	mem := objstore.NewMem()
	c := openTest(t, t.TempDir(), mem, nil)
	ctx := context.Background()
	h, _, err := c.Create(ctx, "z", os.O_WRONLY|os.O_CREATE|os.O_EXCL, NewFile{Owner: &Owner{UID: 5, GID: 6}})
	if err != nil {
		t.Fatal(err)
	}
	writeClose(t, h, []byte("x"))
	wantPerm(t, "after create", statOK(t, c, "z"), 5, 6, 0)
	drainTest(t, c)
	wantPerm(t, "after upload", statOK(t, c, "z"), 5, 6, 0)
	if got := mem.Meta("z")[metaMode]; got != "32768" {
		t.Errorf("object mode metadata %q, want 32768 (S_IFREG|0)", got)
	}
}

// Owner, mode and mtime travel with the object: a second host (or this
// one after losing its cache) reads them back from the store.
func TestMetadataTravelsWithTheObject(t *testing.T) {
	mem := objstore.NewMem()
	a := openTest(t, t.TempDir(), mem, nil)
	ctx := context.Background()
	if _, err := a.Mkdir(ctx, "m", NewFile{Mode: 0o750}); err != nil {
		t.Fatal(err)
	}
	h, _, err := a.Create(ctx, "m/f", os.O_WRONLY|os.O_CREATE|os.O_EXCL, NewFile{Mode: 0o640, Owner: &Owner{UID: 991, GID: 992}})
	if err != nil {
		t.Fatal(err)
	}
	writeClose(t, h, []byte("media"))
	mtime := time.Date(2020, 5, 17, 10, 11, 12, 345678901, time.UTC)
	if _, err := a.SetAttr(ctx, "m/f", AttrChange{MTime: &mtime}); err != nil {
		t.Fatal(err)
	}
	drainTest(t, a)

	b := openTest(t, t.TempDir(), mem, nil)
	statOK(t, b, "m") // the kernel looks a path up name by name
	got := statOK(t, b, "m/f")
	wantPerm(t, "second host", got, 991, 992, 0o640)
	if !got.MTime.Equal(mtime) {
		t.Errorf("second host mtime %v, want %v", got.MTime, mtime)
	}
}

// A change of owner, mode or mtime of a file already in the store is one
// metadata request: the bytes are not sent again.
func TestMetadataOnlyChangeSendsNoBytes(t *testing.T) {
	mem := objstore.NewMem()
	c := openTest(t, t.TempDir(), mem, nil)
	ctx := context.Background()
	writeFile(t, c, "f", []byte("bytes"))
	drainTest(t, c)
	puts := mem.Count("put")
	mode := uint32(0o600)
	if _, err := c.SetAttr(ctx, "f", AttrChange{Mode: &mode, Owner: &Owner{UID: 7, GID: 8}}); err != nil {
		t.Fatal(err)
	}
	drainTest(t, c)
	if got := mem.Count("put") - puts; got != 0 {
		t.Errorf("%d PUTs for a metadata change, want 0", got)
	}
	if got := mem.Count("copy"); got != 1 {
		t.Errorf("%d metadata updates, want 1", got)
	}
	m := mem.Meta("f")
	if m[metaUID] != "7" || m[metaGID] != "8" || m[metaMode] != "33152" {
		t.Errorf("object metadata %v, want uid 7 gid 8 mode 33152", m)
	}
	if data, _ := mem.Object("f"); string(data) != "bytes" {
		t.Errorf("object holds %q after a metadata change", data)
	}
}

// Metadata written by s3fs (decimal st_mode) and rclone (octal) reads back.
func TestForeignMetadataReadsBack(t *testing.T) {
	mem := objstore.NewMem()
	mtime := time.Unix(1600000000, 0)
	mem.SetObjectMeta("s3fs", []byte("a"), map[string]string{"uid": "33", "gid": "34", "mode": "33188", "mtime": "1600000000"})
	mem.SetObjectMeta("rclone", []byte("b"), map[string]string{"mode": "0100600", "mtime": "1600000000.5"})
	mem.SetObjectMeta("hostile", []byte("c"), map[string]string{"uid": "-1", "gid": "x", "mode": "8630", "mtime": "1e99"})
	c := openTest(t, t.TempDir(), mem, nil)
	wantPerm(t, "s3fs", statOK(t, c, "s3fs"), 33, 34, 0o644)
	if got := statOK(t, c, "s3fs"); !got.MTime.Equal(mtime) {
		t.Errorf("s3fs mtime %v, want %v", got.MTime, mtime)
	}
	r := statOK(t, c, "rclone")
	if !r.ModeSet || r.Mode != 0o600 || !r.MTime.Equal(mtime.Add(500*time.Millisecond)) {
		t.Errorf("rclone: mode %o set %v mtime %v", r.Mode, r.ModeSet, r.MTime)
	}
	h := statOK(t, c, "hostile")
	if h.Owner != nil || h.ModeSet || h.Kind != 0 {
		t.Errorf("hostile metadata was believed: %+v", h)
	}
}

// A FIFO, socket or device node is kept in the index: it is found again,
// listed, survives a restart, and is removed like a file.
func TestSpecialFilesAreKept(t *testing.T) {
	mem := objstore.NewMem()
	dir := t.TempDir()
	c := openTest(t, dir, mem, nil)
	ctx := context.Background()
	kinds := map[string]uint32{"fifo": syscall.S_IFIFO, "sock": syscall.S_IFSOCK, "chr": syscall.S_IFCHR, "blk": syscall.S_IFBLK}
	for name, kind := range kinds {
		if _, err := c.Mknod(ctx, name, kind, 0x102, NewFile{Mode: 0o620, Owner: &Owner{UID: 1, GID: 2}}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Mknod(ctx, name, kind, 0, NewFile{}); !errors.Is(err, ErrExist) {
			t.Errorf("mknod over %s: %v, want ErrExist", name, err)
		}
		if _, err := c.Mkdir(ctx, name, NewFile{}); !errors.Is(err, ErrExist) {
			t.Errorf("mkdir over %s: %v, want ErrExist", name, err)
		}
	}
	drainTest(t, c)
	if len(mem.Keys()) != 0 {
		t.Errorf("special files reached the store: %v", mem.Keys())
	}
	c.Close()
	c = openTest(t, dir, mem, nil)
	ents, err := c.Readdir(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != len(kinds) {
		t.Errorf("listing %+v, want the %d nodes", ents, len(kinds))
	}
	for name, kind := range kinds {
		a := statOK(t, c, name)
		if a.Kind != kind || a.Rdev != 0x102 {
			t.Errorf("%s: kind %o rdev %x", name, a.Kind, a.Rdev)
		}
		wantPerm(t, name, a, 1, 2, 0o620)
		if err := c.Unlink(ctx, name); err != nil {
			t.Errorf("remove %s: %v", name, err)
		}
	}
}

// With SkipObjectMeta, an object learned from a listing shows the mount's
// defaults and costs no HEAD; by default its metadata is read once.
func TestObjectMetaCostsOneHeadUnlessSkipped(t *testing.T) {
	for _, skip := range []bool{false, true} {
		mem := objstore.NewMem()
		mem.SetObjectMeta("d/f", []byte("a"), map[string]string{"uid": "33", "gid": "34", "mode": "33152"})
		c, err := Open(Options{Dir: t.TempDir(), Store: mem, SkipObjectMeta: skip})
		if err != nil {
			t.Fatal(err)
		}
		c.Start()
		if _, err := c.Readdir(context.Background(), ""); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Readdir(context.Background(), "d"); err != nil {
			t.Fatal(err)
		}
		a := statOK(t, c, "d/f")
		statOK(t, c, "d/f")
		switch heads := mem.Count("head"); {
		case skip && (heads != 0 || a.Owner != nil):
			t.Errorf("skipped: %d HEADs, owner %+v", heads, a.Owner)
		case !skip && (heads != 1 || a.Owner == nil || a.Owner.UID != 33 || a.Mode != 0o600):
			t.Errorf("read: %d HEADs, owner %+v mode %o", heads, a.Owner, a.Mode)
		}
		c.Close()
	}
}

// A symlink is an object holding its target, marked by its mode as s3fs
// marks one: another host reads it back as the same link.
func TestSymlinkReadsBackOnAnotherHost(t *testing.T) {
	mem := objstore.NewMem()
	a := openTest(t, t.TempDir(), mem, nil)
	ctx := context.Background()
	if _, err := a.Symlink(ctx, "l", "../target/file", NewFile{Mode: 0o777, Owner: &Owner{UID: 3, GID: 4}}); err != nil {
		t.Fatal(err)
	}
	drainTest(t, a)
	if data, _ := mem.Object("l"); string(data) != "../target/file" {
		t.Errorf("link object holds %q", data)
	}
	if m := mem.Meta("l")[metaMode]; m != "41471" { // S_IFLNK|0777, as s3fs writes it
		t.Errorf("link object mode %q, want 41471", m)
	}
	b := openTest(t, t.TempDir(), mem, nil)
	if got := statOK(t, b, "l"); got.Kind != syscall.S_IFLNK || got.Size != int64(len("../target/file")) {
		t.Errorf("second host: kind %o size %d", got.Kind, got.Size)
	}
	if target, err := b.Readlink(ctx, "l"); err != nil || target != "../target/file" {
		t.Errorf("second host readlink: %q %v", target, err)
	}
}

// A lookup of a small store-only file, learned from a LIST, starts its
// download beside the HEAD: the open that follows finds it local. A name
// looked up after a listing of its directory (ls -l) fetches nothing, nor
// does a large file.
func TestLookupFetchesSmallFilesAhead(t *testing.T) {
	mem := objstore.NewMem()
	mem.SetObject("a/b/thumb", make([]byte, 30<<10))
	mem.SetObject("a/b/big", make([]byte, 256<<10+1))
	mem.SetObject("l/m/listed", make([]byte, 10))
	c := openWith(t, Options{Store: mem, FetchAheadMax: 256 << 10})
	ctx := context.Background()
	lookUp(t, c, "a/b/thumb")
	lookUp(t, c, "a/b/big")
	for _, d := range []string{"", "l", "l/m"} {
		if _, err := c.Readdir(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	lookUp(t, c, "l/m/listed")
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, _, err := c.readRecord("a/b/thumb")
		if err != nil {
			t.Fatal(err)
		}
		if r.State == Clean {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the looked-up thumbnail is still %v", r.State)
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	for _, p := range []string{"a/b/big", "l/m/listed"} {
		if r, _, _ := c.readRecord(p); r.State != Remote {
			t.Errorf("%s was fetched by its lookup (%v)", p, r.State)
		}
	}
	if n := mem.Count("get"); n != 1 {
		t.Errorf("%d GETs, want the thumbnail's alone", n)
	}
}

// A stat that fetches a file ahead answers once the GET's response has
// brought the object's metadata: it waits neither for the body (a large
// photo, or a store far away) nor for a HEAD beside the GET.
func TestFetchAheadAnswersWithTheHeaders(t *testing.T) {
	mem := objstore.NewMem()
	data := make([]byte, 1<<20)
	mem.SetObjectMeta("a/b/photo", data, ObjectMeta(1234, 5678, 0o640, time.Unix(1700000000, 0)))
	release := make(chan struct{})
	var releaseOnce sync.Once
	letBodyThrough := func() { releaseOnce.Do(func() { close(release) }) }
	store := &objstore.Faulty{Store: mem, Body: func(key string, body io.ReadCloser, size int64) io.ReadCloser {
		return objstore.HoldBack(body, 4<<10, release)
	}}
	// A lookup that gave up on the GET would send a HEAD after an hour.
	c := openWith(t, Options{Store: store, FetchAheadMax: 4 << 20, LookupTimeout: time.Hour})
	t.Cleanup(letBodyThrough) // before the cache closes, which waits for the fetch
	lookUp(t, c, "a/b")
	type stat struct {
		a   Attr
		err error
	}
	got := make(chan stat, 1)
	go func() {
		a, err := c.Stat(context.Background(), "a/b/photo")
		got <- stat{a, err}
	}()
	select {
	case s := <-got:
		a := s.a
		if s.err != nil {
			t.Fatal(s.err)
		}
		if a.Owner == nil || *a.Owner != (Owner{UID: 1234, GID: 5678}) || !a.ModeSet || a.Mode != 0o640 || a.Size != 1<<20 || a.Provisional {
			t.Errorf("stat while the body is on its way = %+v, want the object's owner, mode and size", a)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the stat waited for the body")
	}
	if n := mem.Count("head"); n != 0 {
		t.Errorf("%d HEADs beside the GET", n)
	}
	letBodyThrough()
	eventually(t, func() bool {
		r, _, err := c.readRecord("a/b/photo")
		return err == nil && r.State == Clean
	})
	if n := mem.Count("get"); n != 1 {
		t.Errorf("%d GETs, want one", n)
	}
}
