package index

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

// The index's other marks (hidden keys, object moves, directory-rename
// intents, the root's attributes) and its walks, as named operations.

// Hide marks the object at p as removed here and kept in the store
// (delete_from_s3: false).
func (t *Tx) Hide(p string) error { return t.txn.Set(HiddenKey(p), nil) }

// Unhide drops the hidden mark of p, if any: a file is made or moved there.
func (t *Tx) Unhide(p string) error { return t.txn.Delete(HiddenKey(p)) }

// UnhideBelow drops up to n hidden marks below the directory p and
// reports how many it dropped: fewer than n means none is left.
func (t *Tx) UnhideBelow(p string, n int) (int, error) {
	it := t.txn.NewIterator(badger.IteratorOptions{Prefix: BelowPrefix(hiddenPrefix, p)})
	var keys [][]byte
	for it.Rewind(); it.Valid() && len(keys) < n; it.Next() {
		keys = append(keys, it.Item().KeyCopy(nil))
	}
	it.Close()
	for _, k := range keys {
		if err := t.txn.Delete(k); err != nil {
			return 0, err
		}
	}
	return len(keys), nil
}

// MoveOwner returns the path of the record whose object still sits at p,
// if a move from p is owed.
func (v View) MoveOwner(p string) (string, bool, error) {
	item, err := v.txn.Get(MoveSourceKey(p))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	b, err := item.ValueCopy(nil)
	return string(b), err == nil, err
}

// MarkMoveSource records that the object at src must move to the record
// at to.
func (t *Tx) MarkMoveSource(src, to string) error { return t.txn.Set(MoveSourceKey(src), []byte(to)) }

// ClearMoveSource drops the move mark of p.
func (t *Tx) ClearMoveSource(p string) error { return t.txn.Delete(MoveSourceKey(p)) }

// StartRename records a directory rename from old to new as under way, so
// that a stop in the middle is finished at the next open.
func (t *Tx) StartRename(old, new string) error { return t.txn.Set(RenameIntentKey(old, new), nil) }

// EndRename drops the record of a directory rename from old to new.
func (t *Tx) EndRename(old, new string) error { return t.txn.Delete(RenameIntentKey(old, new)) }

// RenamesUnderway returns the directory renames a stop interrupted, as
// from and to paths.
func (v View) RenamesUnderway() ([][2]string, error) {
	var out [][2]string
	it := v.txn.NewIterator(badger.IteratorOptions{Prefix: []byte{renameIntentPrefix}})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		if from, to, ok := strings.Cut(string(it.Item().Key()[1:]), "\x00"); ok {
			out = append(out, [2]string{from, to})
		}
	}
	return out, nil
}

// OwedChildren returns the names directly in dir whose delete is owed (a
// pending mark and no record). It costs what the upload queue holds below
// dir, not what dir holds.
func (v View) OwedChildren(dir string) (map[string]bool, error) {
	out := map[string]bool{}
	it := v.txn.NewIterator(badger.IteratorOptions{Prefix: BelowPrefix(pendingPrefix, dir)})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		p := string(it.Item().Key()[1:])
		if ParentOf(p) != dir {
			continue
		}
		if _, ok, err := v.Get(p); err != nil {
			return nil, err
		} else if !ok {
			out[p] = true
		}
	}
	return out, nil
}

// HasOwedAtOrBelow reports an owed upload or delete at p or below it; a
// failed read counts as owed.
func (v View) HasOwedAtOrBelow(p string) bool {
	if ok, err := v.hasKey(PendingKey(p)); ok || err != nil {
		return true
	}
	it := v.txn.NewIterator(badger.IteratorOptions{Prefix: BelowPrefix(pendingPrefix, p), PrefetchValues: false})
	defer it.Close()
	it.Rewind()
	return it.Valid()
}

// rootValue returns the stored attributes of the mount's root; ok is
// false when none were.
func (v View) rootValue() (b []byte, ok bool, err error) {
	item, err := v.txn.Get(RootKey)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	b, err = item.ValueCopy(nil)
	return b, err == nil, err
}

// LRUEntry is one clean file in the eviction order.
type LRUEntry struct {
	At   int64 // last access, unix nanoseconds
	Path string
}

// LRUFrom returns up to n entries of the eviction order, oldest first,
// from the key from (nil: the first), and the key to continue at.
func (v View) LRUFrom(from []byte, n int) ([]LRUEntry, []byte, error) {
	var out []LRUEntry
	var next []byte
	it := v.txn.NewIterator(badger.IteratorOptions{Prefix: []byte{lruPrefix}})
	defer it.Close()
	if from == nil {
		it.Rewind()
	} else {
		it.Seek(from)
	}
	for ; it.Valid() && len(out) < n; it.Next() {
		k := it.Item().Key()
		if len(k) < 9 {
			continue
		}
		out = append(out, LRUEntry{At: int64(binary.BigEndian.Uint64(k[1:9])), Path: string(k[9:])})
		next = append(append([]byte(nil), k...), 0)
	}
	return out, next, nil
}

// ForRecords calls fn for every record in the index, in key order; stop
// is checked between records and ends the walk with its error.
func (v View) ForRecords(stop func() error, fn func(p string, r Record) error) error {
	it := v.txn.NewIterator(badger.IteratorOptions{Prefix: []byte{entryPrefix}, PrefetchValues: true, PrefetchSize: 64})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		if err := stop(); err != nil {
			return err
		}
		item := it.Item()
		var r Record
		err := item.Value(func(b []byte) (err error) {
			r, err = Decode(b)
			return err
		})
		if err != nil {
			return fmt.Errorf("index entry %q: %w", item.Key(), err)
		}
		if err := fn(PathOfEntryKey(item.Key()), r); err != nil {
			return err
		}
	}
	return nil
}
