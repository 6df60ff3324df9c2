// The pool of spare data files.

package cache

import (
	"io/fs"
	"path/filepath"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/datafiles"
	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// dataFiles counts the data files on disk.
func dataFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(filepath.Join(dir, "data"), func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Creates take data files made ahead of time; a clean close leaves only
// the data files the index refers to.
func TestSpareDataFiles(t *testing.T) {
	dir := t.TempDir()
	c := openTest(t, dir, objstore.NewMem(), nil)
	deadline := time.Now().Add(5 * time.Second)
	for c.data.Spares() < datafiles.SpareTarget {
		if time.Now().After(deadline) {
			t.Fatalf("%d spares made, want %d", c.data.Spares(), datafiles.SpareTarget)
		}
		time.Sleep(time.Millisecond)
	}
	before := time.Now()
	writeFile(t, c, "a/f", []byte("data"))
	a, err := c.Stat(t.Context(), "a/f")
	if err != nil {
		t.Fatal(err)
	}
	if a.MTime.Before(before.Add(-time.Second)) {
		t.Errorf("a new file made from a spare has mtime %v, before its creation at %v", a.MTime, before)
	}
	writeFile(t, c, "a/g", []byte("more"))
	drainTest(t, c)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if n := dataFiles(t, dir); n != 2 {
		t.Fatalf("%d data files after a clean close, want the 2 written", n)
	}
}
