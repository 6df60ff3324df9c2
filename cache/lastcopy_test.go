package cache

// Two hosts on one bucket: a late delete from one must not cost the other
// the last copy of a file it wrote.

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/s3"
)

func TestLateDeleteDoesNotCostTheWritersCopy(t *testing.T) {
	ctx := context.Background()
	store := s3.NewMem()
	c, err := Open(Options{Dir: t.TempDir(), Store: store, RevalidateAfter: 20 * time.Millisecond,
		MaxAge: time.Hour, RetryMin: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	t.Cleanup(func() { c.Close() })
	stored := func(p string, want []byte) {
		t.Helper()
		drainTest(t, c)
		if got, ok := store.Object(p); !ok || !bytes.Equal(got, want) {
			t.Fatalf("%s in the store: %q (present %v), want %q", p, got, ok, want)
		}
	}

	// Revalidation: a HEAD answers 404 right after our own upload.
	writeFile(t, c, "m/a", []byte("newer a"))
	stored("m/a", []byte("newer a"))
	store.Delete(ctx, "m/a") // another host's delete of an older version lands late
	time.Sleep(40 * time.Millisecond)
	if _, err := c.Stat(ctx, "m/a"); err != nil {
		t.Fatalf("stat after the late delete: %v", err)
	}
	stored("m/a", []byte("newer a"))

	// A listing that lacks it, right after our own upload.
	writeFile(t, c, "m/b", []byte("newer b"))
	stored("m/b", []byte("newer b"))
	store.Delete(ctx, "m/b")
	if _, err := c.Readdir(ctx, "m"); err != nil {
		t.Fatal(err)
	}
	stored("m/b", []byte("newer b"))

	// Eviction checks the store first.
	writeFile(t, c, "m/c", []byte("newer c"))
	stored("m/c", []byte("newer c"))
	store.Delete(ctx, "m/c")
	c.evictOne("m/c")
	stored("m/c", []byte("newer c"))

	// Once the store has shown our upload, a later absence is a real
	// delete by another host: the file goes.
	time.Sleep(40 * time.Millisecond)
	if _, err := c.Stat(ctx, "m/a"); err != nil { // HEAD: confirmed
		t.Fatal(err)
	}
	store.Delete(ctx, "m/a")
	time.Sleep(40 * time.Millisecond)
	if _, err := c.Stat(ctx, "m/a"); !errors.Is(err, ErrNotExist) {
		t.Fatalf("stat after a delete of a confirmed file: %v, want absent", err)
	}
}
