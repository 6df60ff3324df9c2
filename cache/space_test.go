// The size limit and eviction: limits hold under a write storm, dirty files
// are never evicted, eviction is least recently used first or by age, the
// accounting survives a restart, orphaned data files are swept.

package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

func openBounded(t *testing.T, dir string, store objstore.Store, maxSize int64, wait time.Duration) *Cache {
	t.Helper()
	c, err := Open(Options{Dir: dir, Store: store, MaxSize: maxSize, SpaceWait: wait,
		RetryMin: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	t.Cleanup(func() { c.Close() })
	return c
}

// diskBytes sums the sizes of the local data files, as du would.
func diskBytes(t *testing.T, c *Cache) int64 {
	t.Helper()
	var n int64
	filepath.WalkDir(c.dataDir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func TestLimitHoldsUnderWriteStorm(t *testing.T) {
	mem := objstore.NewMem()
	const limit, size = 1 << 20, 150_000
	c := openBounded(t, t.TempDir(), mem, limit, 10*time.Second)
	ctx := context.Background()
	files := map[string][]byte{}
	for i := range 40 { // 6 MB through a 1 MiB cache
		p := fmt.Sprintf("f%02d", i)
		h, _, err := c.Create(ctx, p, os.O_WRONLY|os.O_CREATE, NewFile{Mode: 0o644})
		if err != nil {
			t.Fatal(err)
		}
		// Admitted: what is on disk, besides this open file, is within the limit.
		if n := diskBytes(t, c); n > limit {
			t.Fatalf("file %d: %d bytes on disk, limit %d", i, n, limit)
		}
		files[p] = bytes.Repeat([]byte{byte(i)}, size)
		if _, err := h.WriteAt(ctx, files[p], 0); err != nil {
			t.Fatal(err)
		}
		h.Flush(ctx)
		h.Release(ctx)
	}
	drainTest(t, c)
	c.kickEvictor()
	for p, data := range files {
		wantObject(t, mem, p, data)
	}
	u := c.Usage()
	if u.DirtyBytes != 0 || u.LocalBytes != diskBytes(t, c) {
		t.Fatalf("accounting %+v, disk %d", u, diskBytes(t, c))
	}
	// Every file still reads back, refetched where it was evicted.
	for p, data := range files {
		if got := readFile(t, c, p); !bytes.Equal(got, data) {
			t.Fatalf("%s after eviction differs", p)
		}
	}
}

func TestDirtyFilesAreNeverEvicted(t *testing.T) {
	mem := objstore.NewMem()
	var down atomic.Bool
	down.Store(true)
	store := &objstore.Faulty{Store: mem, BeforePut: func(ctx context.Context, key string) error {
		if down.Load() {
			return objstore.Unavailable("put", key)
		}
		return nil
	}}
	c := openBounded(t, t.TempDir(), store, 200_000, 300*time.Millisecond)
	ctx := context.Background()
	written := map[string][]byte{}
	var full error
	for i := 0; i < 10 && full == nil; i++ {
		p := fmt.Sprintf("d%d", i)
		h, _, err := c.Create(ctx, p, os.O_WRONLY|os.O_CREATE, NewFile{Mode: 0o644})
		if err != nil {
			full = err
			break
		}
		data := bytes.Repeat([]byte{byte(i + 1)}, 90_000)
		if _, err := h.WriteAt(ctx, data, 0); err != nil {
			t.Fatal(err)
		}
		h.Flush(ctx)
		h.Release(ctx)
		written[p] = data
	}
	if !errors.Is(full, ErrNoSpace) {
		t.Fatalf("writing past the limit with the store down: %v, want ErrNoSpace", full)
	}
	c.kickEvictor()
	time.Sleep(50 * time.Millisecond)
	for p, data := range written {
		if a, _ := c.Stat(ctx, p); a.State != Dirty && a.State != Uploading {
			t.Fatalf("%s is %s, want dirty or uploading", p, a.State)
		}
		if got := readFile(t, c, p); !bytes.Equal(got, data) {
			t.Fatalf("%s changed while the cache was full", p)
		}
	}
	// The store comes back: uploads drain, eviction frees room, writing resumes.
	down.Store(false)
	drainTest(t, c)
	writeFile(t, c, "after", []byte("room again"))
	drainTest(t, c)
	for p, data := range written {
		wantObject(t, mem, p, data)
	}
}

func TestEvictionIsLeastRecentlyUsedFirst(t *testing.T) {
	mem := objstore.NewMem()
	const size = 100_000
	c := openBounded(t, t.TempDir(), mem, 3*size+size/2, 10*time.Second)
	for _, p := range []string{"a", "b", "c"} {
		writeFile(t, c, p, bytes.Repeat([]byte(p), size))
		drainTest(t, c)
	}
	readFile(t, c, "a") // a is now more recent than b and c
	c.flushAccess()
	writeFile(t, c, "d", bytes.Repeat([]byte("d"), size))
	drainTest(t, c)
	c.kickEvictor()
	eventually(t, func() bool {
		a, _ := c.Stat(context.Background(), "b")
		return a.State == Remote
	})
	for p, want := range map[string]State{"a": Clean, "c": Clean, "d": Clean} {
		if a, _ := c.Stat(context.Background(), p); a.State != want {
			t.Errorf("%s is %s, want %s", p, a.State, want)
		}
	}
	if mem.Count("get") != 0 {
		t.Fatal("eviction fetched something")
	}
}

func TestMaxAgeEvictsIdleCleanFiles(t *testing.T) {
	mem := objstore.NewMem()
	c, err := Open(Options{Dir: t.TempDir(), Store: mem, MaxAge: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	t.Cleanup(func() { c.Close() })
	writeFile(t, c, "old", []byte("idle"))
	drainTest(t, c)
	time.Sleep(150 * time.Millisecond)
	c.kickEvictor()
	eventually(t, func() bool { a, _ := c.Stat(context.Background(), "old"); return a.State == Remote })
	if got := readFile(t, c, "old"); string(got) != "idle" {
		t.Fatalf("refetch after age eviction: %q", got)
	}
}

func TestAccountingSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	mem := objstore.NewMem()
	down := &objstore.Faulty{Store: mem, BeforePut: func(ctx context.Context, key string) error { return objstore.Unavailable("put", key) }}
	c, err := Open(Options{Dir: dir, Store: down, RetryMin: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	writeFile(t, c, "x", make([]byte, 12345))
	writeFile(t, c, "y", make([]byte, 555))
	c.Close()
	c2, err := Open(Options{Dir: dir, Store: mem})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if u := c2.Usage(); u.LocalBytes != 12900 || u.DirtyBytes != 12900 {
		t.Fatalf("after restart: %+v, want 12900 local and dirty", u)
	}
	c2.Start()
	drainTest(t, c2)
	if u := c2.Usage(); u.LocalBytes != 12900 || u.DirtyBytes != 0 {
		t.Fatalf("after upload: %+v", u)
	}
}

func TestOrphanedDataFilesSweptAfterUncleanStop(t *testing.T) {
	dir := t.TempDir()
	c, err := Open(Options{Dir: dir, Store: objstore.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	writeFile(t, c, "kept", []byte("referenced"))
	orphan := c.data.Path("00000000000000000000000000000000")
	os.MkdirAll(filepath.Dir(orphan), 0o700)
	os.WriteFile(orphan, []byte("left by a crash"), 0o600)
	old := time.Now().Add(-time.Hour)
	os.Chtimes(orphan, old, old)
	// An unclean stop: the running marker stays.
	c.closing.Store(true)
	c.endLife()
	c.q.Wait()
	c.bg.Wait()
	c.closed.Store(true)
	c.ix.Close()

	c2 := openTest(t, dir, objstore.NewMem(), nil)
	eventually(t, func() bool { _, err := os.Stat(orphan); return errors.Is(err, os.ErrNotExist) })
	if got := readFile(t, c2, "kept"); string(got) != "referenced" {
		t.Fatalf("referenced file after the sweep: %q", got)
	}
}

func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
