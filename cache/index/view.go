package index

import "github.com/dgraph-io/badger/v4"

// View is a read-only look at the index inside one transaction. Outside
// this package the index is read only through View and written only
// through Tx (which has View's reads too): named operations, never keys.
type View struct{ txn *badger.Txn }

// Get reads the record at path p; ok is false when there is none.
func (v View) Get(p string) (Record, bool, error) { return get(v.txn, p) }

// PathOfInode returns the path of the record with inode number ino; ok is
// false when no record has it (removed, or never was).
func (v View) PathOfInode(ino uint64) (string, bool, error) { return pathOfInode(v.txn, ino) }

// HasPending reports whether an upload or a delete of p is owed.
func (v View) HasPending(p string) (bool, error) { return hasPending(v.txn, p) }

// IsHidden reports whether the object at p is hidden: by a key of its own
// or by a removed directory at or above it.
func (v View) IsHidden(p string) (bool, error) { return isHidden(v.txn, p) }

// GoneHere reports a key removed through this mount whose object the
// store may still hold (see goneHere).
func (v View) GoneHere(p string) (bool, error) { return goneHere(v.txn, p) }

// ForChildren calls fn for each direct child of dir, in name order.
func (v View) ForChildren(dir string, fn func(name string, r Record) error) error {
	return forChildren(v.txn, dir, fn)
}

// ForChildrenFrom is ForChildren starting at the name from; fn may end
// the walk by returning ErrStop.
func (v View) ForChildrenFrom(dir, from string, fn func(name string, r Record) error) error {
	return forChildrenFrom(v.txn, dir, from, fn)
}

// HasChildren reports whether dir has any child in the index.
func (v View) HasChildren(dir string) (bool, error) { return hasChildren(v.txn, dir) }

// HasGoneBelow reports whether any owed work or hidden key lies below dir.
func (v View) HasGoneBelow(dir string) bool { return hasGoneBelow(v.txn, dir) }

// HasPendingBelow reports whether work is owed on any key below the folder
// key k ("dir/"), other than k itself.
func (v View) HasPendingBelow(k string) bool { return hasPendingBelow(v.txn, k) }

// OwedBelow returns the paths below dir with an upload or delete owed
// (see owedBelow).
func (v View) OwedBelow(dir string) (map[string]bool, error) { return owedBelow(v.txn, dir) }

// IsDir reports whether p is the root or a directory in the index.
func (v View) IsDir(p string) (bool, error) { return isDir(v.txn, p) }

// ForFilesFrom calls fn for up to n records of files, in key order, from
// the key after (nil: the first), and returns the key to continue after;
// nil once the walk has passed the last record.
func (v View) ForFilesFrom(after []byte, n int, fn func(p string, r Record)) ([]byte, error) {
	return forFilesFrom(v.txn, after, n, fn)
}

// LRUGet returns p's last access time, if p is in the LRU order.
func (v View) LRUGet(p string) (int64, bool, error) { return lruGet(v.txn, p) }

// SetPending owes the store an upload or a delete of p.
func (t *Tx) SetPending(p string) error { return setPending(t.txn, p) }

// ClearPending records that nothing is owed for p any more.
func (t *Tx) ClearPending(p string) error { return clearPending(t.txn, p) }

// HideTree hides everything the store holds below the directory p.
func (t *Tx) HideTree(p string) error { return hideTree(t.txn, p) }
