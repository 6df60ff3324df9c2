package index

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

// View is a read-only look at the index inside one transaction. Outside
// this package the index is read only through View and written only
// through Tx (which has View's reads too): named operations, never keys.
// Paths are relative to the mount root, "" being the root, with "/"
// between names.
type View struct{ txn *badger.Txn }

// View runs fn in a read-only transaction.
func (ix *DB) View(fn func(v View) error) error {
	ix.reads.Add(1)
	return ix.db.View(func(txn *badger.Txn) error { return fn(View{txn}) })
}

// Get reads the record at path p; ok is false when there is none.
func (v View) Get(p string) (Record, bool, error) {
	item, err := v.txn.Get(EntryKey(p))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, err
	}
	var r Record
	err = item.Value(func(v []byte) error {
		var derr error
		r, derr = Decode(v)
		return derr
	})
	if err != nil {
		return Record{}, false, fmt.Errorf("index entry %q: %w", p, err)
	}
	return r, true, nil
}

// PathOfInode returns the path of the record with inode number ino; ok is
// false when no record has it (the file was removed, or never was).
func (v View) PathOfInode(ino uint64) (p string, ok bool, err error) {
	if ino == RootIno {
		return "", true, nil
	}
	item, err := v.txn.Get(InodeKey(ino))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	if err := item.Value(func(v []byte) error { p = string(v); return nil }); err != nil {
		return "", false, err
	}
	r, ok, err := v.Get(p)
	if err != nil || !ok || r.Ino != ino {
		return "", false, err
	}
	return p, true, nil
}

func (v View) HasPending(p string) (bool, error) {
	_, err := v.txn.Get(PendingKey(p))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}

// IsHidden reports whether the object at p is hidden: by a key of its own
// or by a removed directory at or above it.
func (v View) IsHidden(p string) (bool, error) {
	if ok, err := v.hasKey(HiddenKey(p)); ok || err != nil {
		return ok, err
	}
	for d := p; d != ""; d = ParentOf(d) {
		if ok, err := v.hasKey(HiddenTreeKey(d)); ok || err != nil {
			return ok, err
		}
	}
	return false, nil
}

func (v View) hasKey(k []byte) (bool, error) {
	_, err := v.txn.Get(k)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}

// GoneHere reports a key removed through this mount whose object the store
// may still hold: a tombstone (delete owed) or a hidden key (kept by
// choice). Lookups and listings treat it as absent.
func (v View) GoneHere(p string) (bool, error) {
	if _, ok, err := v.Get(p); ok || err != nil {
		return false, err
	}
	if pend, err := v.HasPending(p); pend || err != nil {
		return pend, err
	}
	return v.IsHidden(p)
}

// ForChildren calls fn for each direct child of dir, in name order.
func (v View) ForChildren(dir string, fn func(name string, r Record) error) error {
	return v.ForChildrenFrom(dir, "", fn)
}

// ErrStop ends a ForChildrenFrom walk early without an error.
var ErrStop = errors.New("stop iteration")

// ForChildrenFrom is ForChildren starting at the name from; fn may end
// the walk by returning ErrStop.
func (v View) ForChildrenFrom(dir, from string, fn func(name string, r Record) error) error {
	prefix := ChildrenPrefix(dir)
	it := v.txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 64})
	defer it.Close()
	for it.Seek(append(slices.Clip(prefix), from...)); it.Valid(); it.Next() {
		item := it.Item()
		name := string(item.Key()[len(prefix):])
		var r Record
		err := item.Value(func(v []byte) error {
			var derr error
			r, derr = Decode(v)
			return derr
		})
		if err != nil {
			return fmt.Errorf("index entry %q: %w", JoinPath(dir, name), err)
		}
		if err := fn(name, r); err != nil {
			if errors.Is(err, ErrStop) {
				return nil
			}
			return err
		}
	}
	return nil
}

// HasChildren reports whether dir has any child in the index.
func (v View) HasChildren(dir string) (bool, error) {
	prefix := ChildrenPrefix(dir)
	it := v.txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	it.Rewind()
	return it.Valid(), nil
}

// HasGoneBelow reports whether any owed work or hidden key lies below dir.
func (v View) HasGoneBelow(dir string) bool {
	for _, pk := range []byte{pendingPrefix, hiddenPrefix, hiddenTreePrefix} {
		it := v.txn.NewIterator(badger.IteratorOptions{Prefix: BelowPrefix(pk, dir)})
		it.Rewind()
		found := it.Valid()
		it.Close()
		if found {
			return true
		}
	}
	return false
}

// HasPendingBelow reports whether work is owed on any key below the folder
// key k ("dir/"), other than k itself.
func (v View) HasPendingBelow(k string) bool {
	prefix := PendingKey(k)
	it := v.txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		if len(it.Item().Key()) > len(prefix) {
			return true
		}
	}
	return false
}

// OwedBelow returns the paths below dir whose delete is owed. It is read
// before a LIST starts: one of them may complete while the LIST is
// answered, and its key must still count as gone. Hidden keys need no
// such care (they stay), and are checked key by key (GoneHere), so that
// this costs what the upload queue holds, not what was ever removed.
func (v View) OwedBelow(dir string) (map[string]bool, error) {
	var paths []string
	prefix := BelowPrefix(pendingPrefix, dir)
	it := v.txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	for it.Rewind(); it.Valid(); it.Next() {
		paths = append(paths, string(it.Item().Key()[1:]))
	}
	it.Close()
	out := make(map[string]bool, len(paths))
	for _, p := range paths {
		if _, ok, err := v.Get(p); err != nil {
			return nil, err
		} else if !ok {
			out[p] = true
		}
	}
	return out, nil
}

// IsDir reports whether p is the root or a directory in the index.
func (v View) IsDir(p string) (bool, error) {
	if p == "" {
		return true, nil
	}
	r, ok, err := v.Get(p)
	return ok && r.Dir, err
}

// ForFilesFrom calls fn for up to n records of files, in key order, from
// the key after (nil: the first), and returns the key to continue after;
// nil once the walk has passed the last record.
func (v View) ForFilesFrom(after []byte, n int, fn func(p string, r Record)) ([]byte, error) {
	it := v.txn.NewIterator(badger.IteratorOptions{Prefix: []byte{entryPrefix}, PrefetchValues: true, PrefetchSize: 64})
	defer it.Close()
	if after == nil {
		it.Rewind()
	} else {
		it.Seek(append(slices.Clip(after), 0))
	}
	var last []byte
	for seen := 0; it.Valid() && seen < n; it.Next() {
		item := it.Item()
		last = item.KeyCopy(last[:0])
		parent, name, ok := strings.Cut(string(last[1:]), "\x00")
		if !ok {
			continue
		}
		var r Record
		if err := item.Value(func(v []byte) (err error) { r, err = Decode(v); return err }); err != nil {
			return nil, fmt.Errorf("index entry %q: %w", JoinPath(parent, name), err)
		}
		seen++
		if !r.Dir {
			fn(JoinPath(parent, name), r)
		}
	}
	if !it.Valid() {
		return nil, nil
	}
	return last, nil
}

// LRUGet returns p's last access time, if p is in the LRU order.
func (v View) LRUGet(p string) (int64, bool, error) {
	item, err := v.txn.Get(AccessKey(p))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	var at int64
	err = item.Value(func(v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("%w: access time of %q", ErrCorrupt, p)
		}
		at = int64(binary.BigEndian.Uint64(v))
		return nil
	})
	return at, true, err
}
