package cache

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/dgraph-io/badger/v4"
	"github.com/s3mediafs/s3mediafs/cache/index"
)

// NotInStore calls fn with the path and size of every file whose bytes
// this cache holds and the store does not: written and not yet uploaded,
// or in a tree kept local. It reads one snapshot of the index; reconcile
// uses it so as not to call such a file missing, nor its object orphaned.
func (c *Cache) NotInStore(fn func(path string, size int64) error) error {
	return c.ix.View(func(txn *badger.Txn) error { return notInStore(txn, fn) })
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
	return ix.View(func(txn *badger.Txn) error { return notInStore(txn, fn) })
}

func notInStore(txn *badger.Txn, fn func(string, int64) error) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{index.EntryPrefix}, PrefetchValues: true, PrefetchSize: 64})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		var r index.Record
		err := item.Value(func(v []byte) (err error) {
			r, err = index.Decode(v)
			return err
		})
		if err != nil {
			return fmt.Errorf("index entry %q: %w", item.Key(), err)
		}
		if !r.OwesUpload() && (r.Dir || r.State != Local) {
			continue
		}
		if err := fn(index.PathOfEntryKey(item.Key()), r.Size); err != nil {
			return err
		}
	}
	return nil
}
