package index

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

// Reads and writes of records and marks inside a transaction. Paths are
// relative to the mount root, "" being the root, with "/" between names.

// get reads the record at path p; ok is false when there is none.
func get(txn *badger.Txn, p string) (Record, bool, error) {
	item, err := txn.Get(EntryKey(p))
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

func putRecord(txn *badger.Txn, p string, r Record) error {
	return txn.Set(EntryKey(p), r.Encode())
}

func deleteRecord(txn *badger.Txn, p string) error {
	return txn.Delete(EntryKey(p))
}

// forgetInode removes the inode key of ino if it still names p: a rename
// in the same transaction may have pointed it at the new name already.
func forgetInode(txn *badger.Txn, ino uint64, p string) error {
	item, err := txn.Get(InodeKey(ino))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	same := false
	if err := item.Value(func(v []byte) error { same = string(v) == p; return nil }); err != nil || !same {
		return err
	}
	return txn.Delete(InodeKey(ino))
}

// pathOfInode returns the path of the record with inode number ino; ok is
// false when no record has it (the file was removed, or never was).
func pathOfInode(txn *badger.Txn, ino uint64) (p string, ok bool, err error) {
	if ino == RootIno {
		return "", true, nil
	}
	item, err := txn.Get(InodeKey(ino))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	if err := item.Value(func(v []byte) error { p = string(v); return nil }); err != nil {
		return "", false, err
	}
	r, ok, err := get(txn, p)
	if err != nil || !ok || r.Ino != ino {
		return "", false, err
	}
	return p, true, nil
}

// PathOfEntryKey is the path an n key (EntryKey) is the record of.
func PathOfEntryKey(k []byte) string {
	k = k[1:]
	for i, b := range k {
		if b == 0 {
			return JoinPath(string(k[:i]), string(k[i+1:]))
		}
	}
	return string(k)
}

func hasPending(txn *badger.Txn, p string) (bool, error) {
	_, err := txn.Get(PendingKey(p))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}

func setPending(txn *badger.Txn, p string) error   { return txn.Set(PendingKey(p), nil) }
func clearPending(txn *badger.Txn, p string) error { return txn.Delete(PendingKey(p)) }

// isHidden reports whether the object at p is hidden: by a key of its own
// or by a removed directory at or above it.
func isHidden(txn *badger.Txn, p string) (bool, error) {
	if ok, err := hasKey(txn, HiddenKey(p)); ok || err != nil {
		return ok, err
	}
	for d := p; d != ""; d = ParentOf(d) {
		if ok, err := hasKey(txn, HiddenTreeKey(d)); ok || err != nil {
			return ok, err
		}
	}
	return false, nil
}

// hideTree hides everything the store holds below the directory p, in
// place of the hidden keys below it, which go in batches of their own
// (removeHiddenBelow).
func hideTree(txn *badger.Txn, p string) error { return txn.Set(HiddenTreeKey(p), nil) }

func hasKey(txn *badger.Txn, k []byte) (bool, error) {
	_, err := txn.Get(k)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}

// goneHere reports a key removed through this mount whose object the store
// may still hold: a tombstone (delete owed) or a hidden key (kept by
// choice). Lookups and listings treat it as absent.
func goneHere(txn *badger.Txn, p string) (bool, error) {
	if _, ok, err := get(txn, p); ok || err != nil {
		return false, err
	}
	if pend, err := hasPending(txn, p); pend || err != nil {
		return pend, err
	}
	return isHidden(txn, p)
}

// forChildren calls fn for each direct child of dir, in name order.
func forChildren(txn *badger.Txn, dir string, fn func(name string, r Record) error) error {
	return forChildrenFrom(txn, dir, "", fn)
}

// ErrStop ends a ForChildren walk early without an error.
var ErrStop = errors.New("stop iteration")

// forChildrenFrom is ForChildren starting at the name from; fn may end
// the walk by returning ErrStop.
func forChildrenFrom(txn *badger.Txn, dir, from string, fn func(name string, r Record) error) error {
	prefix := ChildrenPrefix(dir)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 64})
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

// hasChildren reports whether dir has any child in the index.
func hasChildren(txn *badger.Txn, dir string) (bool, error) {
	prefix := ChildrenPrefix(dir)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	it.Rewind()
	return it.Valid(), nil
}

// hasGoneBelow reports whether any owed work or hidden key lies below dir.
func hasGoneBelow(txn *badger.Txn, dir string) bool {
	for _, pk := range []byte{PendingPrefix, HiddenPrefix, HiddenTreePrefix} {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: BelowPrefix(pk, dir)})
		it.Rewind()
		found := it.Valid()
		it.Close()
		if found {
			return true
		}
	}
	return false
}

// hasPendingBelow reports whether work is owed on any key below the folder
// key k ("dir/"), other than k itself.
func hasPendingBelow(txn *badger.Txn, k string) bool {
	prefix := PendingKey(k)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		if len(it.Item().Key()) > len(prefix) {
			return true
		}
	}
	return false
}

// BelowPrefix is the key prefix of everything below dir under key kind pk.
func BelowPrefix(pk byte, dir string) []byte {
	if dir == "" {
		return []byte{pk}
	}
	return append(append([]byte{pk}, dir...), '/')
}

// owedBelow returns the paths below dir whose delete is owed. It is read
// before a LIST starts: one of them may complete while the LIST is
// answered, and its key must still count as gone. Hidden keys need no
// such care (they stay), and are checked key by key (GoneHere), so that
// this costs what the upload queue holds, not what was ever removed.
func owedBelow(txn *badger.Txn, dir string) (map[string]bool, error) {
	var paths []string
	prefix := BelowPrefix(PendingPrefix, dir)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	for it.Rewind(); it.Valid(); it.Next() {
		paths = append(paths, string(it.Item().Key()[1:]))
	}
	it.Close()
	out := make(map[string]bool, len(paths))
	for _, p := range paths {
		if _, ok, err := get(txn, p); err != nil {
			return nil, err
		} else if !ok {
			out[p] = true
		}
	}
	return out, nil
}

// isDir reports whether p is the root or a directory in the index.
func isDir(txn *badger.Txn, p string) (bool, error) {
	if p == "" {
		return true, nil
	}
	r, ok, err := get(txn, p)
	return ok && r.Dir, err
}

// ParentOf is the directory holding p ("" for a top-level name).
func ParentOf(p string) string {
	parent, _ := SplitPath(p)
	return parent
}

// SplitPath splits "a/b/c" into "a/b" and "c"; a top-level name has parent "".
func SplitPath(p string) (parent, name string) {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i], p[i+1:]
	}
	return "", p
}

// JoinPath joins a directory path and a name.
func JoinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// forFilesFrom calls fn for up to n records of files, in key order, from
// the key after (nil: the first), and returns the key to continue after;
// nil once the walk has passed the last record.
func forFilesFrom(txn *badger.Txn, after []byte, n int, fn func(p string, r Record)) ([]byte, error) {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{EntryPrefix}, PrefetchValues: true, PrefetchSize: 64})
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
