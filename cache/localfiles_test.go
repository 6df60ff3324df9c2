// NotInStore and ReadNotInStore: the files only this cache holds, for
// reconcile, with the daemon running or not.

package cache

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"slices"
	"testing"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// NotInStore lists exactly the files whose bytes only this cache holds:
// owed uploads and local trees, not uploaded files nor remote ones; and
// ReadNotInStore reads the same from the closed index.
func TestNotInStore(t *testing.T) {
	mem := objstore.NewMem()
	refuse := errors.New("store down for this key")
	store := &objstore.Faulty{Store: mem, BeforePut: func(_ context.Context, key string) error {
		if key == "local_content/ow/ed/upload" {
			return refuse
		}
		return nil
	}}
	dir := t.TempDir()
	c, err := Open(Options{Dir: dir, Store: store, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		RetryMin: 5e6, RetryMax: 5e7, LocalOnly: urlCacheOnly})
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	mem.SetObject("remote_content/example.org/re/mo/te", []byte("remote"))
	writeFile(t, c, "local_content/up/lo/aded", []byte("in S3"))
	ctx, cancel := context.WithTimeout(context.Background(), 5e9)
	defer cancel()
	c.Flush(ctx)
	writeFile(t, c, "local_content/ow/ed/upload", []byte("owed!"))
	writeFile(t, c, "url_cache/2024-01-01/preview", []byte("local tree"))
	lookupAll(t, c, "remote_content/example.org/re/mo/te")

	want := map[string]int64{"local_content/ow/ed/upload": 5, "url_cache/2024-01-01/preview": 10}
	collect := func(list func(func(string, int64) error) error) map[string]int64 {
		got := map[string]int64{}
		if err := list(func(p string, size int64) error { got[p] = size; return nil }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := collect(c.NotInStore); !maps.Equal(got, want) {
		t.Fatalf("live: %v, want %v", got, want)
	}
	c.Close()
	got := collect(func(fn func(string, int64) error) error { return ReadNotInStore(dir, slog.Default(), fn) })
	if !maps.Equal(got, want) {
		t.Fatalf("closed index: %v, want keys %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
	}
}

// A cache directory that was never mounted holds nothing, and says so
// without an error.
func TestReadNotInStoreNeverMounted(t *testing.T) {
	err := ReadNotInStore(t.TempDir(), slog.Default(), func(p string, _ int64) error {
		t.Errorf("a file in an empty cache: %s", p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
