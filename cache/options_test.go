// Options that change the contract: trees kept local, deletes kept in the
// store, synchronous close.

package cache

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

func openWith(t *testing.T, o Options) *Cache {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	if o.RetryMin == 0 {
		o.RetryMin, o.RetryMax = 5*time.Millisecond, 50*time.Millisecond
	}
	c, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	t.Cleanup(func() { c.Close() })
	return c
}

func urlCacheOnly(p string) bool {
	top, _, _ := strings.Cut(p, "/")
	return top == "url_cache" || top == "url_cache_thumbnails"
}

func TestLocalOnlyTreesNeverReachTheStore(t *testing.T) {
	mem := objstore.NewMem()
	c := openWith(t, Options{Store: mem, LocalOnly: urlCacheOnly})
	ctx := context.Background()
	writeFile(t, c, "url_cache/2026/abc", []byte("preview"))
	writeFile(t, c, "local_content/ab/cd/x", []byte("media"))
	drainTest(t, c)
	if _, ok := mem.Object("url_cache/2026/abc"); ok {
		t.Fatal("a url_cache file was uploaded")
	}
	wantObject(t, mem, "local_content/ab/cd/x", []byte("media"))
	if a, _ := c.Stat(ctx, "url_cache/2026/abc"); a.State != Local {
		t.Fatalf("state %s, want local", a.State)
	}
	if _, err := c.Stat(ctx, "url_cache/2026/unknown"); !errors.Is(err, ErrNotExist) {
		t.Fatal(err)
	}
	before := mem.Count("head") + mem.Count("list")
	c.Readdir(ctx, "url_cache/2026")
	if err := c.Unlink(ctx, "url_cache/2026/abc"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rmdir(ctx, "url_cache/2026"); err != nil {
		t.Fatal(err)
	}
	if n := mem.Count("head") + mem.Count("list") - before; n != 0 {
		t.Fatalf("%d store requests for a local-only tree", n)
	}
	drainTest(t, c)
	if mem.DeleteRequests() != 0 {
		t.Fatal("a local-only unlink sent a DELETE")
	}
	// Local files are never evicted, even over the limit.
	c.mu.Lock()
	c.opts.MaxSize = 1
	c.mu.Unlock()
	writeFile(t, c, "url_cache/big", make([]byte, 10_000))
	c.evict(ctx)
	if a, _ := c.Stat(ctx, "url_cache/big"); a.State != Local {
		t.Fatalf("local-only file evicted: %s", a.State)
	}
}

func TestKeepDeletedInStoreHidesInsteadOfDeleting(t *testing.T) {
	mem := objstore.NewMem()
	c := openWith(t, Options{Store: mem, KeepDeletedInStore: true})
	ctx := context.Background()
	writeFile(t, c, "d/x", []byte("kept"))
	drainTest(t, c)
	if err := c.Unlink(ctx, "d/x"); err != nil {
		t.Fatal(err)
	}
	drainTest(t, c)
	wantObject(t, mem, "d/x", []byte("kept"))
	if mem.DeleteRequests() != 0 {
		t.Fatal("DELETE sent with delete_from_s3 off")
	}
	if _, err := c.Stat(ctx, "d/x"); !errors.Is(err, ErrNotExist) {
		t.Fatalf("removed file still visible: %v", err)
	}
	if err := c.Rmdir(ctx, "d"); err != nil {
		t.Fatalf("rmdir over a hidden object: %v", err)
	}
	// Writing the name again replaces the hidden object.
	writeFile(t, c, "d/x", []byte("new"))
	drainTest(t, c)
	wantObject(t, mem, "d/x", []byte("new"))
}

func TestSynchronousCloseWaitsForTheStore(t *testing.T) {
	mem := objstore.NewMem()
	var fail atomic.Bool
	store := &objstore.Faulty{Store: mem, BeforePut: func(ctx context.Context, key string) error {
		if fail.Load() {
			return objstore.Denied("put", key)
		}
		return nil
	}}
	c := openWith(t, Options{Store: store, Synchronous: true, StoreTimeout: 2 * time.Second})
	writeFile(t, c, "sync", []byte("in S3 before close returns"))
	// No drain: close() itself waited.
	wantObject(t, mem, "sync", []byte("in S3 before close returns"))

	fail.Store(true)
	ctx := context.Background()
	h, _, err := c.Create(ctx, "refused", 0, NewFile{Mode: 0o644})
	if err != nil {
		t.Fatal(err)
	}
	h.WriteAt(ctx, []byte("x"), 0)
	err = h.Flush(ctx)
	h.Release(ctx)
	if !errors.Is(err, ErrStore) || !strings.Contains(err.Error(), "AccessDenied") {
		t.Fatalf("close with the store refusing: %v, want the store's error", err)
	}
	// The data is still safe locally and goes up once the store accepts it.
	fail.Store(false)
	drainTest(t, c)
	wantObject(t, mem, "refused", []byte("x"))
}
