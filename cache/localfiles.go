package cache

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/s3mediafs/s3mediafs/cache/index"
)

// NotInStore calls fn with the path and size of every file whose bytes
// this cache holds and the store does not: written and not yet uploaded,
// or in a tree kept local. It reads one snapshot of the index; reconcile
// uses it so as not to call such a file missing, nor its object orphaned.
func (c *Cache) NotInStore(fn func(path string, size int64) error) error {
	return c.ix.View(func(txn index.View) error { return notInStore(txn, fn) })
}

// ReadNotInStore is NotInStore for the cache in dir while no daemon has it
// open: the index is opened read-only and closed again.
// A cache directory with no index (never mounted) holds nothing.
func ReadNotInStore(dir string, log *slog.Logger, fn func(path string, size int64) error) error {
	if _, err := os.Stat(filepath.Join(dir, "index")); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	ix, err := index.OpenReadOnly(dir, log)
	if err != nil {
		return err
	}
	defer ix.Close()
	return ix.View(func(txn index.View) error { return notInStore(txn, fn) })
}

func notInStore(txn index.View, fn func(string, int64) error) error {
	return txn.ForRecords(func() error { return nil }, func(p string, r index.Record) error {
		if !r.OwesUpload() && (r.Dir || r.State != Local) {
			return nil
		}
		return fn(p, r.Size)
	})
}
