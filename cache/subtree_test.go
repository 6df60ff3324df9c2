// Trees learned by lookups, and unlink forgetting them.

package cache

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// A cold lookup of a directory learns the tree below it from the same
// LIST: the path walk below it asks the store nothing more until
// NegativeTTL has passed.
func TestLookupLearnsTheTreeBelow(t *testing.T) {
	mem := objstore.NewMem()
	mem.SetObject("local_content/ab/cd/media1", []byte("12345"))
	mem.SetObject("local_content/ab/ef/media2", []byte("x"))
	c, err := Open(Options{Dir: t.TempDir(), Store: mem, NegativeTTL: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	t.Cleanup(func() { c.Close() })
	ctx := context.Background()
	requests := func() int { return mem.Count("list") + mem.Count("head") }

	if a, err := c.Stat(ctx, "local_content"); err != nil || !a.Dir {
		t.Fatalf("local_content: %+v %v", a, err)
	}
	if n := requests(); n != 1 {
		t.Fatalf("%d requests for the first lookup, want 1", n)
	}
	if a, err := c.Stat(ctx, "local_content/ab"); err != nil || !a.Dir {
		t.Fatalf("ab: %+v %v", a, err)
	}
	if a, err := c.Stat(ctx, "local_content/ab/cd"); err != nil || !a.Dir {
		t.Fatalf("cd: %+v %v", a, err)
	}
	if a, err := c.Stat(ctx, "local_content/ab/cd/media1"); err != nil || a.Dir || a.Size != 5 {
		t.Fatalf("media1: %+v %v", a, err)
	}
	if _, err := c.Stat(ctx, "local_content/ab/cd/nothing"); !errors.Is(err, ErrNotExist) {
		t.Fatalf("a missing name: %v, want ErrNotExist", err)
	}
	if n := requests(); n != 2 {
		t.Fatalf("%d requests for the walk down, want the first lookup's LIST and the file's metadata HEAD", n)
	}
	h, err := c.OpenFile(ctx, "local_content/ab/cd/media1", 0)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if n, err := h.ReadAt(ctx, buf, 0); err != nil || string(buf[:n]) != "12345" {
		t.Fatalf("read: %q %v", buf[:n], err)
	}
	h.Release(ctx)

	// What the tree held is trusted only for NegativeTTL: a name another
	// host made since is found after it.
	mem.SetObject("local_content/ab/cd/media3", []byte("new"))
	time.Sleep(600 * time.Millisecond)
	if a, err := c.Stat(ctx, "local_content/ab/cd/media3"); err != nil || a.Size != 3 {
		t.Fatalf("media3 after NegativeTTL: %+v %v", a, err)
	}
}

// A local unlink drops what lookups learned, so that a directory emptied
// here is not brought back from a tree seen before it.
func TestUnlinkForgetsLearnedTrees(t *testing.T) {
	mem := objstore.NewMem()
	mem.SetObject("a/b/only", []byte("x"))
	c, err := Open(Options{Dir: t.TempDir(), Store: mem, NegativeTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	t.Cleanup(func() { c.Close() })
	ctx := context.Background()
	for _, p := range []string{"a", "a/b", "a/b/only"} { // the kernel's walk
		if _, err := c.Stat(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Unlink(ctx, "a/b/only"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rmdir(ctx, "a/b"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Stat(ctx, "a/b"); !errors.Is(err, ErrNotExist) {
		t.Fatalf("a/b after rmdir: %v, want ErrNotExist", err)
	}
}
