// Every index format change is a migration: the index of each earlier
// release (cache/testdata/index-vN.tar.gz) opens and is upgraded in
// place; a newer one is refused, never misread.

package cache

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/s3mediafs/s3mediafs/cache/index"
	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// unpackFixture extracts a fixture cache directory into a temporary one.
func unpackFixture(t *testing.T, name string) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("tar", "-xzf", "testdata/"+name, "-C", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("unpack %s: %v %s", name, err, out)
	}
	return dir
}

// The first release's index: written through its cache API
// (testdata/index-v1.tar.gz): a clean file with mode 0600 and a set
// mtime, a file removed while delete_from_s3 was off (hidden), a
// local-only url_cache file, a store-only file learned by lookups, and
// a dirty file owed an upload when the daemon died.
func TestIndexOfTheFirstReleaseOpens(t *testing.T) {
	ctx := context.Background()
	dir := unpackFixture(t, "index-v1.tar.gz")
	store := objstore.NewMem()
	store.SetObject("local_content/ab/cd/clean", []byte("clean bytes"))
	store.SetObject("local_content/ab/cd/hidden", []byte("hidden bytes"))
	store.SetObject("remote_content/example.org/ab/cd/remotefile", []byte("remote bytes"))
	c, err := Open(Options{Dir: dir, Store: store, KeepDeletedInStore: true,
		LocalOnly: func(p string) bool { return strings.HasPrefix(p, "url_cache") }})
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	t.Cleanup(func() { c.Close() })
	if !c.uncleanStop {
		t.Error("the fixture's unclean stop was not seen")
	}
	var version uint64
	if err := c.ix.Badger().View(func(txn *badger.Txn) error {
		item, err := txn.Get(index.SchemaKey)
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error { version, _ = binary.Uvarint(v); return nil })
	}); err != nil || version != index.SchemaVersion {
		t.Fatalf("index format after open: %d, %v; want %d", version, err, index.SchemaVersion)
	}
	// The upgrade gave every record its inode key.
	if ino, ok := c.InodeOf("local_content/ab/cd/clean"); !ok {
		t.Error("no record for the clean file")
	} else if p, ok, err := c.PathOfInode(ino); !ok || err != nil || p != "local_content/ab/cd/clean" {
		t.Errorf("PathOfInode of an upgraded record: %q %v %v", p, ok, err)
	}

	read := func(p string) []byte {
		t.Helper()
		h, err := c.OpenFile(ctx, p, os.O_RDONLY)
		if err != nil {
			t.Fatalf("open %s: %v", p, err)
		}
		defer h.Release(ctx)
		b := make([]byte, 100)
		n, err := h.ReadAt(ctx, b, 0)
		if err != nil {
			t.Fatalf("read %s: %v", p, err)
		}
		return b[:n]
	}
	a, err := c.Stat(ctx, "local_content/ab/cd/clean")
	if err != nil || a.Size != 11 || a.Mode != 0o600 || a.State != Clean ||
		!a.MTime.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Fatalf("clean file: %+v, %v", a, err)
	}
	gets := store.Count("get")
	if got := read("local_content/ab/cd/clean"); string(got) != "clean bytes" || store.Count("get") != gets {
		t.Fatalf("clean file read %q (GETs %d)", got, store.Count("get")-gets)
	}
	if _, err := c.Stat(ctx, "local_content/ab/cd/hidden"); !errors.Is(err, ErrNotExist) {
		t.Fatalf("hidden file: %v", err)
	}
	entries, err := c.Readdir(ctx, "local_content/ab/cd")
	if err != nil || len(entries) != 1 || entries[0].Name != "clean" {
		t.Fatalf("readdir beside the hidden file: %+v, %v", entries, err)
	}
	if a, err := c.Stat(ctx, "url_cache/xy/local"); err != nil || a.State != Local {
		t.Fatalf("local-only file: %+v, %v", a, err)
	}
	if got := read("url_cache/xy/local"); string(got) != "local-only bytes" {
		t.Fatalf("local-only file read %q", got)
	}
	if got := read("remote_content/example.org/ab/cd/remotefile"); string(got) != "remote bytes" {
		t.Fatalf("store-only file read %q", got)
	}
	drainTest(t, c)
	if got, ok := store.Object("local_content/ef/gh/dirty"); !ok || !bytes.Equal(got, []byte("dirty bytes")) {
		t.Fatalf("the owed upload: %q, %v", got, ok)
	}
}

// An index from a newer release is refused with a message that says so.
func TestIndexOfANewerReleaseIsRefused(t *testing.T) {
	dir := t.TempDir()
	c, err := Open(Options{Dir: dir, Store: objstore.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ix.Badger().Update(func(txn *badger.Txn) error {
		return txn.Set(index.SchemaKey, binary.AppendUvarint(nil, index.SchemaVersion+1))
	}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	_, err = Open(Options{Dir: dir, Store: objstore.NewMem()})
	if err == nil || !strings.Contains(err.Error(), "newer s3mediafs") {
		t.Fatalf("open of a newer index: %v", err)
	}
}
