// Any directory lists, whatever its size.

package cache

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// hugeDirNames is the size of the directory TestHugeDirectoryLists
// lists: past Badger's transaction limit (about 25,000 records) by
// default, a million with S3MEDIAFS_HUGE_DIR=1000000.
func hugeDirNames(t *testing.T) int {
	if v := os.Getenv("S3MEDIAFS_HUGE_DIR"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	return 60_000
}

// A directory of more names than one index transaction can record (put
// in the bucket by another host) lists completely, twice, and a name
// another host deletes meanwhile goes from the listing.
func TestHugeDirectoryLists(t *testing.T) {
	ctx := context.Background()
	n := hugeDirNames(t)
	store := objstore.NewMem()
	for i := range n {
		store.SetObject(fmt.Sprintf("remote_content/big/%07d", i), []byte{byte(i)})
	}
	store.SetObject("remote_content/big/sub/x", []byte("x"))
	c := openTest(t, t.TempDir(), store, nil)
	for _, p := range []string{"remote_content", "remote_content/big"} {
		if _, err := c.Stat(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	entries, err := c.Readdir(ctx, "remote_content/big")
	if err != nil {
		t.Fatalf("readdir of %d names: %v", n, err)
	}
	took := time.Since(start)
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	t.Logf("listed %d names in %v; %d MiB allocated in all", len(entries), took, (after.TotalAlloc-before.TotalAlloc)>>20)
	if len(entries) != n+1 {
		t.Fatalf("readdir returned %d entries, want %d", len(entries), n+1)
	}
	if e := entries[n]; e.Name != "sub" || !e.Dir {
		t.Fatalf("last entry %+v, want the directory sub", e)
	}
	// Every name is recorded: a lookup of one asks the store nothing.
	lists := store.Count("list")
	if a, err := c.Stat(ctx, fmt.Sprintf("remote_content/big/%07d", n-1)); err != nil || a.Size != 1 {
		t.Fatalf("stat of a listed name: %+v, %v", a, err)
	}
	if store.Count("list") != lists {
		t.Error("a lookup of a listed name asked the store")
	}

	// Another host deletes a file: the next listing forgets it.
	if err := store.Delete(ctx, "remote_content/big/0000007"); err != nil {
		t.Fatal(err)
	}
	entries, err = c.Readdir(ctx, "remote_content/big")
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != n {
		t.Fatalf("second readdir returned %d entries, want %d", len(entries), n)
	}
	if _, ok, _ := c.readRecord("remote_content/big/0000007"); ok {
		t.Fatal("a file deleted by another host is still in the index")
	}
}

// Keys no local tool could use as names (a component over 255 bytes, not
// UTF-8) are left out of a listing, with one warning for the listing.
func TestUnusableNamesLeftOut(t *testing.T) {
	ctx := context.Background()
	store := objstore.NewMem()
	long := strings.Repeat("x", 300)
	store.SetObject("d/"+long, []byte("1"))
	store.SetObject("d/"+long+"2", []byte("1"))
	store.SetObject("d/bytes-\xff", []byte("1"))
	store.SetObject("d/fine", []byte("1"))
	var logs strings.Builder
	c := openTest(t, t.TempDir(), store, slog.New(slog.NewTextHandler(&logs, nil)))
	if _, err := c.Stat(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	entries, err := c.Readdir(ctx, "d")
	if err != nil || len(entries) != 1 || entries[0].Name != "fine" {
		t.Fatalf("readdir: %+v, %v", entries, err)
	}
	if n := strings.Count(logs.String(), "cannot show"); n != 1 {
		t.Errorf("%d warnings for the listing, want 1:\n%s", n, logs.String())
	}
}
