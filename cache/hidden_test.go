// With delete_from_s3: false, removed files stay in the store, hidden by
// the mount; what a listing costs must not grow with them.

package cache

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

func TestHiddenFilesCostListingsNothing(t *testing.T) {
	ctx := context.Background()
	n := 20_000
	if v := os.Getenv("S3MEDIAFS_HIDDEN_FILES"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	store := objstore.NewMem()
	for i := range n {
		store.SetObject(fmt.Sprintf("d/gone/%06d", i), []byte("x"))
	}
	store.SetObject("d/live/f", []byte("y"))
	c, err := Open(Options{Dir: t.TempDir(), Store: store, KeepDeletedInStore: true})
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	t.Cleanup(func() { c.Close() })
	for _, p := range []string{"d", "d/gone"} {
		if _, err := c.Stat(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	names, err := c.Readdir(ctx, "d/gone")
	if err != nil || len(names) != n {
		t.Fatalf("readdir d/gone: %d names, %v", len(names), err)
	}
	// Synapse's purge: remove every file, then the directory.
	start := time.Now()
	for _, e := range names {
		if err := c.Unlink(ctx, "d/gone/"+e.Name); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Rmdir(ctx, "d/gone"); err != nil {
		t.Fatal(err)
	}
	t.Logf("hid %d files in %v", n, time.Since(start))
	if got := len(store.Keys()); got != n+1 {
		t.Fatalf("the store holds %d objects, want all %d kept", got, n+1)
	}

	lists, heads := store.Count("list"), store.Count("head")
	start = time.Now()
	entries, err := c.Readdir(ctx, "d")
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name != "live" {
		t.Fatalf("readdir d: %+v, want only live", entries)
	}
	if _, err := c.Stat(ctx, "d/gone"); !errors.Is(err, ErrNotExist) {
		t.Fatalf("stat of the removed directory: %v", err)
	}
	if _, err := c.Stat(ctx, "d/gone/000001"); !errors.Is(err, ErrNotExist) {
		t.Fatalf("stat of a removed file: %v", err)
	}
	if l, h := store.Count("list")-lists, store.Count("head")-heads; l != 1 || h != 0 {
		t.Errorf("readdir and lookups beside %d hidden files cost %d LISTs and %d HEADs, want 1 and 0", n, l, h)
	}
	t.Logf("readdir beside %d hidden files took %v", n, took)

	// Made again here, the directory shows what is written now, and
	// none of the hidden files.
	if _, err := c.Mkdir(ctx, "d/gone", NewFile{Mode: 0o755}); err != nil {
		t.Fatal(err)
	}
	writeFile(t, c, "d/gone/new", []byte("new"))
	entries, err = c.Readdir(ctx, "d/gone")
	if err != nil || len(entries) != 1 || entries[0].Name != "new" {
		t.Fatalf("readdir of the directory made again: %+v, %v", entries, err)
	}
}
