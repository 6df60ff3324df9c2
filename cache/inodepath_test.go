package cache

import (
	"context"
	"testing"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// A daemon taking over a live mount learns the kernel's inodes from the
// index: every inode number leads to its file's path, through renames of
// the file and of the directories above it, and a removed file's to none.
func TestPathOfInodeFollowsRenames(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c := openTest(t, dir, objstore.NewMem(), nil)
	if _, err := c.Mkdir(ctx, "a", NewFile{}); err != nil {
		t.Fatal(err)
	}
	writeFile(t, c, "a/f", []byte("x"))
	writeFile(t, c, "a/g", []byte("y"))
	want := func(p, at string) {
		t.Helper()
		ino, ok := c.InodeOf(p)
		if !ok {
			t.Fatalf("%s: no record", p)
		}
		got, ok, err := c.PathOfInode(ino)
		if err != nil || !ok || got != at {
			t.Fatalf("PathOfInode(%d) = %q %v %v, want %q", ino, got, ok, err, at)
		}
	}
	want("a/f", "a/f")
	fIno, _ := c.InodeOf("a/f")
	if err := c.Rename(ctx, "a", "b"); err != nil {
		t.Fatal(err)
	}
	want("b", "b")
	want("b/f", "b/f")
	if err := c.Rename(ctx, "b/g", "b/f"); err != nil {
		t.Fatal(err)
	}
	if p, ok, _ := c.PathOfInode(fIno); ok {
		t.Errorf("the inode renamed over still leads to %q", p)
	}
	want("b/f", "b/f")
	if err := c.Unlink(ctx, "b/f"); err != nil {
		t.Fatal(err)
	}
	if p, ok, _ := c.PathOfInode(1); !ok || p != "" {
		t.Errorf("the root: %q %v", p, ok)
	}
}
