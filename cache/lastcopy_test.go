// Two hosts on one bucket: another host's delete must not cost this host
// the last copy of a file it wrote.

package cache

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// flakyHead answers HEAD with "not found" while gone is set: the store's
// 404 that a LIST then contradicts.
type flakyHead struct {
	*objstore.Mem
	gone atomic.Bool
}

func (f *flakyHead) Head(ctx context.Context, key string) (objstore.Object, error) {
	if f.gone.Load() {
		return objstore.Object{}, os.ErrNotExist
	}
	return f.Mem.Head(ctx, key)
}

func TestAnotherHostsDeleteKeepsTheWritersBytes(t *testing.T) {
	ctx := context.Background()
	mem := objstore.NewMem()
	store := &flakyHead{Mem: mem}
	dir := t.TempDir()
	c, err := Open(Options{Dir: dir, Store: store, RevalidateAfter: 20 * time.Millisecond, MaxAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	t.Cleanup(func() { c.Close() })
	write := func(p string) {
		t.Helper()
		writeFile(t, c, p, []byte("bytes of "+p))
		drainTest(t, c)
	}
	kept := func(p string) {
		t.Helper()
		got, err := os.ReadFile(filepath.Join(dir, "lost+found", p))
		if err != nil || !bytes.Equal(got, []byte("bytes of "+p)) {
			t.Fatalf("the last copy of %s: %q, %v", p, got, err)
		}
	}
	// The lookup past revalidate_after is answered from the index and
	// revalidates in the background: the lookups after it see the delete.
	gone := func(p string) {
		t.Helper()
		time.Sleep(40 * time.Millisecond) // past revalidate_after
		deadline := time.Now().Add(5 * time.Second)
		for {
			_, err := c.Stat(ctx, p)
			if errors.Is(err, ErrNotExist) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("stat of %s after another host's delete: %v, want absent", p, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	// A 404 right after our own upload that a LIST contradicts: kept.
	write("m/a")
	store.gone.Store(true)
	time.Sleep(40 * time.Millisecond)
	if _, err := c.Stat(ctx, "m/a"); err != nil {
		t.Fatalf("stat after a HEAD's 404 that a LIST contradicts: %v", err)
	}
	store.gone.Store(false)

	// Really gone (another host deleted it) before the store showed it
	// back: gone here too, the bytes kept aside.
	write("m/b")
	mem.Delete(ctx, "m/b")
	gone("m/b")
	kept("m/b")

	// The same, found by a listing.
	write("m/c")
	mem.Delete(ctx, "m/c")
	if _, err := c.Readdir(ctx, "m"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := c.readRecord("m/c"); ok {
		t.Fatal("a file a listing shows gone is still in the index")
	}
	kept("m/c")

	// The same, found by eviction, which asks the store first.
	write("m/d")
	mem.Delete(ctx, "m/d")
	if c.evictOne("m/d") {
		t.Fatal("evicted a copy the store lost")
	}
	kept("m/d")

	// Once the store has shown our upload, a delete by another host is an
	// ordinary one: gone, nothing kept.
	write("m/e")
	time.Sleep(40 * time.Millisecond)
	if _, err := c.Stat(ctx, "m/e"); err != nil { // HEAD: confirmed
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // the background HEAD answers
	mem.Delete(ctx, "m/e")
	gone("m/e")
	if _, err := os.Stat(filepath.Join(dir, "lost+found", "m/e")); !os.IsNotExist(err) {
		t.Fatalf("kept a copy the store had shown: %v", err)
	}
	drainTest(t, c)
	for _, p := range []string{"m/b", "m/c", "m/d", "m/e"} {
		if _, ok := mem.Object(p); ok {
			t.Errorf("%s is in the store again: a delete by another host was undone", p)
		}
	}
}
