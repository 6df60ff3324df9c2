// Renames of directories and files: every object moves in the store,
// across stops at every step, in batches, with reads racing the moves, and
// for objects too large to copy in one request.

package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/index"
	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// readAll reads the whole file p through the cache.
func readAll(t *testing.T, c *Cache, p string) string {
	t.Helper()
	ctx := context.Background()
	h, err := c.OpenFile(ctx, p, os.O_RDONLY)
	if err != nil {
		t.Fatalf("open %s: %v", p, err)
	}
	defer h.Release(ctx)
	b := make([]byte, 1<<16)
	n, err := h.ReadAt(ctx, b, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("read %s: %v", p, err)
	}
	return string(b[:n])
}

// renameTree lays out a tree at "a" in every state a file can be in: sent
// (clean), sent and evicted (remote), never sent (dirty), only in the
// store (unknown to the index, with another tool's metadata), and a FIFO.
func renameTree(t *testing.T, c *Cache, mem *objstore.Mem) map[string]string {
	t.Helper()
	ctx := context.Background()
	want := map[string]string{"x": "clean", "sub/y": "evicted", "sub/deep/z": "unknown", "d": "dirty"}
	writeFile(t, c, "a/x", []byte(want["x"]))
	writeFile(t, c, "a/sub/y", []byte(want["sub/y"]))
	if _, err := c.Mknod(ctx, "a/fifo", 0o010000, 0, NewFile{Mode: 0o600}); err != nil {
		t.Fatal(err)
	}
	drainTest(t, c)
	if !c.evictOne("a/sub/y") {
		t.Fatal("a/sub/y could not be evicted")
	}
	mem.SetObjectMeta("a/sub/deep/z", []byte(want["sub/deep/z"]), map[string]string{"uid": "33", "gid": "33", "mode": "33152"})
	writeFile(t, c, "a/d", []byte(want["d"]))
	return want
}

// wantStoreHolds checks that the store holds exactly prefix/<name> for the
// names of want, with those bytes.
func wantStoreHolds(t *testing.T, mem *objstore.Mem, prefix string, want map[string]string) {
	t.Helper()
	var keys []string
	for name, data := range want {
		keys = append(keys, prefix+"/"+name)
		wantObject(t, mem, prefix+"/"+name, []byte(data))
	}
	slices.Sort(keys)
	if got := mem.Keys(); !slices.Equal(got, keys) {
		t.Errorf("store holds %q, want %q", got, keys)
	}
}

// A directory rename is seen at once through the mount; in the store each
// object moves with a server-side copy and a delete, and only the file
// never sent is uploaded.
func TestDirectoryRenameMovesEveryObject(t *testing.T) {
	mem := objstore.NewMem()
	// The file never sent stays so at its old name: every PUT there
	// fails. (Letting them through once the rename returned raced with a
	// retry already under way, which then landed at the old key: a second
	// PUT, and a delete after it.)
	faulty := &objstore.Faulty{Store: mem, BeforePut: func(_ context.Context, key string) error {
		if key == "a/d" {
			return errors.New("not yet")
		}
		return nil
	}}
	c := openTest(t, t.TempDir(), faulty, nil)
	ctx := context.Background()
	want := renameTree(t, c, mem)
	if _, err := c.Mkdir(ctx, "b", NewFile{}); err != nil {
		t.Fatal(err)
	}
	puts := mem.Count("put")
	if err := c.Rename(ctx, "a", "b"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Stat(ctx, "a"); !errors.Is(err, ErrNotExist) {
		t.Errorf("old directory after rename: %v", err)
	}
	for name, data := range want {
		if got := readAll(t, c, "b/"+name); got != data {
			t.Errorf("b/%s reads %q before the move, want %q", name, got, data)
		}
	}
	if a := statOK(t, c, "b/fifo"); a.Kind != 0o010000 {
		t.Errorf("fifo after rename: kind %o", a.Kind)
	}
	drainTest(t, c)
	wantStoreHolds(t, mem, "b", want)
	if p, k := mem.Count("put")-puts, mem.Count("copy"); p != 1 || k != 3 {
		t.Errorf("%d PUTs and %d copies for the rename, want a copy per object in the store, and a PUT only for the file never sent", p, k)
	}
	if m := mem.Meta("b/sub/deep/z"); m["uid"] != "33" || m["mode"] != "33152" {
		t.Errorf("another tool's metadata did not move with the object: %v", m)
	}
	for name, data := range want {
		if got := readAll(t, c, "b/"+name); got != data {
			t.Errorf("b/%s reads %q after the move, want %q", name, got, data)
		}
	}
}

// A stop at any point of the moves (after a copy, before its delete, or
// before any) loses nothing and leaves no object at both keys once the
// restarted cache has caught up.
func TestDirectoryRenameSurvivesAStopAtEveryStep(t *testing.T) {
	for _, failAt := range []string{"copy", "delete"} {
		for n := 0; n < 3; n++ {
			t.Run(fmt.Sprintf("%s%d", failAt, n), func(t *testing.T) {
				mem := objstore.NewMem()
				var calls atomic.Int32
				broken := errors.New("stopped")
				fail := func(op string) func(context.Context, string) error {
					return func(context.Context, string) error {
						if op == failAt && calls.Add(1) > int32(n) {
							return broken
						}
						return nil
					}
				}
				faulty := &objstore.Faulty{Store: mem, BeforeCopy: fail("copy"), BeforeDelete: fail("delete")}
				dir := t.TempDir()
				c := openTest(t, dir, faulty, nil)
				want := renameTree(t, c, mem)
				if err := c.Rename(context.Background(), "a", "b"); err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 300e6)
				c.Drain(ctx) // fails: the store stops answering part way
				cancel()
				if err := c.Close(); err != nil {
					t.Fatal(err)
				}
				c = openTest(t, dir, mem, nil)
				drainTest(t, c)
				wantStoreHolds(t, mem, "b", want)
				for name, data := range want {
					if got := readAll(t, c, "b/"+name); got != data {
						t.Errorf("b/%s reads %q, want %q", name, got, data)
					}
				}
			})
		}
	}
}

// Renamed twice before the first move was sent, or with a new file made at
// an old name meanwhile: each object ends at its last name, once.
func TestDirectoryRenamedAgainBeforeItsMove(t *testing.T) {
	mem := objstore.NewMem()
	hold := make(chan struct{})
	faulty := &objstore.Faulty{Store: mem, BeforeCopy: func(ctx context.Context, key string) error {
		select {
		case <-hold:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}}
	c := openTest(t, t.TempDir(), faulty, nil)
	ctx := context.Background()
	want := renameTree(t, c, mem)
	if err := c.Rename(ctx, "a", "b"); err != nil {
		t.Fatal(err)
	}
	writeFile(t, c, "a/x", []byte("new file at an old name"))
	if err := c.Rename(ctx, "b", "c"); err != nil {
		t.Fatal(err)
	}
	close(hold)
	drainTest(t, c)
	for name, data := range want {
		wantObject(t, mem, "c/"+name, []byte(data))
	}
	if got := mem.Keys(); !slices.Equal(got, []string{"a/x", "c/d", "c/sub/deep/z", "c/sub/y", "c/x"}) {
		t.Errorf("store holds %q", got)
	}
	if got := readAll(t, c, "a/x"); got != "new file at an old name" {
		t.Errorf("a/x reads %q", got)
	}
}

// Renaming into itself, over a file, or over a directory that is not
// empty fails and changes nothing.
func TestDirectoryRenameRefusals(t *testing.T) {
	mem := objstore.NewMem()
	c := openTest(t, t.TempDir(), mem, nil)
	ctx := context.Background()
	writeFile(t, c, "a/f", []byte("1"))
	writeFile(t, c, "full/g", []byte("2"))
	writeFile(t, c, "file", []byte("3"))
	for _, tc := range []struct {
		to   string
		want error
	}{{"a/inner", ErrInvalid}, {"file", ErrNotDir}, {"full", ErrNotEmpty}} {
		if err := c.Rename(ctx, "a", tc.to); !errors.Is(err, tc.want) {
			t.Errorf("rename a to %s: %v, want %v", tc.to, err, tc.want)
		}
	}
	if got := readAll(t, c, "a/f"); got != "1" {
		t.Errorf("a/f reads %q after refused renames", got)
	}
}

// A tree larger than one index transaction moves in batches; a stop
// between two leaves a rename intent that the next Open finishes.
func TestDirectoryRenameInBatchesFinishesAfterAStop(t *testing.T) {
	defer func(n int) { renameBatch = n }(renameBatch)
	renameBatch = 2
	mem := objstore.NewMem()
	dir := t.TempDir()
	c := openTest(t, dir, mem, nil)
	ctx := context.Background()
	want := renameTree(t, c, mem)
	if err := c.Rename(ctx, "a", "b"); err != nil {
		t.Fatal(err)
	}
	drainTest(t, c)
	wantStoreHolds(t, mem, "b", want)

	// Now stop half way through moving b to c, by hand.
	c.mu.Lock()
	var paths []string
	err := c.ix.View(func(txn index.View) error { return collectBelow(txn, "b", &paths) })
	if err == nil {
		err = c.updateLocked(func(t *index.Tx) error {
			if err := t.StartRename("b", "c"); err != nil {
				return err
			}
			for _, from := range append([]string{"b"}, paths[:2]...) {
				if _, err := c.moveRecordTxn(t, from, "c"+strings.TrimPrefix(from, "b"), 1); err != nil {
					return err
				}
			}
			return nil
		})
	}
	c.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c = openTest(t, dir, mem, nil)
	drainTest(t, c)
	if _, err := c.Stat(ctx, "b"); !errors.Is(err, ErrNotExist) {
		t.Errorf("b after the finished rename: %v", err)
	}
	for name, data := range want {
		if got := readAll(t, c, "c/"+name); got != data {
			t.Errorf("c/%s reads %q, want %q", name, got, data)
		}
	}
	wantStoreHolds(t, mem, "c", want)
}

// BenchmarkDirectoryRename moves a tree of 100,000 clean files, and
// reports how long the mount's other work waited at most meanwhile (a
// stat of a file elsewhere, in a loop).
func BenchmarkDirectoryRename(b *testing.B) {
	const n = 100_000
	var stall time.Duration
	for range b.N {
		b.StopTimer()
		c := openTest(b, b.TempDir(), objstore.NewMem(), nil)
		FillIndex(b, c, n)
		writeFile(&testing.T{}, c, "elsewhere/f", []byte("x"))
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				start := time.Now()
				if _, err := c.Stat(context.Background(), "elsewhere/f"); err != nil {
					b.Error(err)
					return
				}
				if d := time.Since(start); d > stall {
					stall = d
				}
			}
		}()
		b.StartTimer()
		if err := c.Rename(context.Background(), "local_content", "moved"); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		close(done)
		wg.Wait()
		c.Close()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/record")
	b.ReportMetric(float64(stall.Microseconds())/1000, "max-stall-ms")
}

// While a rename moves its records, a path the kernel resolved before it
// finds its record at either name.
func TestResolveDuringAMove(t *testing.T) {
	c := openTest(t, t.TempDir(), objstore.NewMem(), nil)
	writeFile(t, c, "a/x", []byte("1"))
	writeFile(t, c, "a/y", []byte("2"))
	if got := c.Resolve("a/x"); got != "a/x" {
		t.Errorf("no move under way: %q", got)
	}
	c.moving.add("a", "b")
	defer c.moving.remove("a")
	c.mu.Lock()
	err := c.updateLocked(func(t *index.Tx) error {
		for _, p := range []string{"a", "a/x"} {
			if _, err := c.moveRecordTxn(t, p, "b"+strings.TrimPrefix(p, "a"), 1); err != nil {
				return err
			}
		}
		return nil
	})
	c.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{"a/x": "b/x", "a/y": "a/y", "a": "b", "a/new": "a/new", "c/x": "c/x"} {
		if got := c.Resolve(p); got != want {
			t.Errorf("Resolve(%q) = %q, want %q", p, got, want)
		}
	}
}

// A read that asks for the old key just as the move deletes it reads the
// new key instead: the file is not "gone" for a moment.
func TestReadRacingItsObjectsMove(t *testing.T) {
	mem := objstore.NewMem()
	faulty := &objstore.Faulty{Store: mem, BeforeGet: func(ctx context.Context, key string) error {
		if key != "a/f" {
			return nil
		}
		for { // hold the GET until the move has deleted the old key
			if _, ok := mem.Object("a/f"); !ok {
				return nil
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Millisecond):
			}
		}
	}}
	c := openTest(t, t.TempDir(), faulty, nil)
	writeFile(t, c, "a/f", []byte("moving"))
	drainTest(t, c)
	if !c.evictOne("a/f") {
		t.Fatal("a/f could not be evicted")
	}
	if err := c.Rename(context.Background(), "a", "b"); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, c, "b/f"); got != "moving" {
		t.Errorf("b/f reads %q", got)
	}
}

// A file whose bytes are in the store (evicted, or clean) is renamed by a
// server-side copy: nothing is downloaded or uploaded again.
func TestFileRenameMovesTheObjectInTheStore(t *testing.T) {
	mem := objstore.NewMem()
	c := openTest(t, t.TempDir(), mem, nil)
	ctx := context.Background()
	writeFile(t, c, "d/evicted", []byte("big media"))
	writeFile(t, c, "d/clean", []byte("thumb"))
	writeFile(t, c, "d/replaced", []byte("old"))
	drainTest(t, c)
	if !c.evictOne("d/evicted") {
		t.Fatal("not evicted")
	}
	gets, puts := mem.Count("get"), mem.Count("put")
	for _, mv := range [][2]string{{"d/evicted", "d/e2"}, {"d/clean", "d/replaced"}} {
		if err := c.Rename(ctx, mv[0], mv[1]); err != nil {
			t.Fatal(err)
		}
	}
	drainTest(t, c)
	if g, p := mem.Count("get")-gets, mem.Count("put")-puts; g != 0 || p != 0 {
		t.Errorf("%d GETs and %d PUTs for renames of stored files, want none", g, p)
	}
	wantStoreHolds(t, mem, "d", map[string]string{"e2": "big media", "replaced": "thumb"})
	if got := readAll(t, c, "d/e2"); got != "big media" {
		t.Errorf("d/e2 reads %q", got)
	}
}

// An object too large for one CopyObject moves by going up again at its
// new key (fetched first if it was evicted); the old key is deleted after.
func TestRenameOfObjectsTooLargeToCopy(t *testing.T) {
	defer func(n int64) { maxCopySize = n }(maxCopySize)
	maxCopySize = 4
	mem := objstore.NewMem()
	c := openTest(t, t.TempDir(), mem, nil)
	ctx := context.Background()
	writeFile(t, c, "a/evicted", []byte("large one"))
	writeFile(t, c, "a/clean", []byte("large two"))
	writeFile(t, c, "a/s", []byte("s"))
	drainTest(t, c)
	if !c.evictOne("a/evicted") {
		t.Fatal("not evicted")
	}
	puts := mem.Count("put")
	if err := c.Rename(ctx, "a", "b"); err != nil {
		t.Fatal(err)
	}
	drainTest(t, c)
	wantStoreHolds(t, mem, "b", map[string]string{"evicted": "large one", "clean": "large two", "s": "s"})
	if p, k := mem.Count("put")-puts, mem.Count("copy"); p != 2 || k != 1 {
		t.Errorf("%d PUTs and %d copies, want 2 (the large ones) and 1", p, k)
	}
}
