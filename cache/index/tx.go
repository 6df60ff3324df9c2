package index

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Tx is a read-write index transaction that keeps the derived parts of the
// index in step with every record it writes: the byte accounting (local
// and dirty bytes) and the least-recently-used order of clean files. All
// record writes go through Put and Del, so no caller can forget either.
type Tx struct {
	View
	txn   *badger.Txn
	touch func(p string) // told of every record written or removed
	now   int64          // unix nanoseconds, for new LRU entries
	delta Acct
}

// Put writes r at p.
func (t *Tx) Put(p string, r Record) error {
	old, had, err := t.Get(p)
	if err != nil {
		return err
	}
	if err := t.derive(p, old, had, r, true); err != nil {
		return err
	}
	t.touch(p)
	if had && old.Ino != r.Ino {
		if err := forgetInode(t.txn, old.Ino, p); err != nil {
			return err
		}
	}
	if err := t.txn.Set(InodeKey(r.Ino), []byte(p)); err != nil {
		return err
	}
	return putRecord(t.txn, p, r)
}

// Del removes the record at p.
func (t *Tx) Del(p string) error {
	old, had, err := t.Get(p)
	if err != nil || !had {
		return err
	}
	return t.DelRead(p, old)
}

// DelRead removes the record at p, which this transaction just read as old.
func (t *Tx) DelRead(p string, old Record) error {
	if err := t.derive(p, old, true, Record{}, false); err != nil {
		return err
	}
	t.touch(p)
	if err := forgetInode(t.txn, old.Ino, p); err != nil {
		return err
	}
	return deleteRecord(t.txn, p)
}

func localBytes(r Record) int64 {
	if r.Dir || r.Data == "" {
		return 0
	}
	return r.Size
}

func dirtyBytes(r Record) int64 {
	if !r.OwesUpload() {
		return 0
	}
	return r.Size
}

// dirtyFiles counts r among the files owing an upload: 1 or 0.
func dirtyFiles(r Record) int64 {
	if r.OwesUpload() {
		return 1
	}
	return 0
}

// Evictable says r may be evicted: a clean file whose object is at its own
// key (one still to be moved is not, as its bytes would then be nowhere
// the mount reads).
func Evictable(r Record, ok bool) bool { return ok && !r.Dir && r.State == Clean && r.MoveFrom == "" }

// derive updates accounting and LRU membership for a change from old to new.
func (t *Tx) derive(p string, old Record, hadOld bool, new Record, hasNew bool) error {
	if hadOld {
		t.delta.Used -= localBytes(old)
		t.delta.Dirty -= dirtyBytes(old)
		t.delta.DirtyFiles -= dirtyFiles(old)
	}
	if hasNew {
		t.delta.Used += localBytes(new)
		t.delta.Dirty += dirtyBytes(new)
		t.delta.DirtyFiles += dirtyFiles(new)
	}
	wasClean, nowClean := Evictable(old, hadOld), Evictable(new, hasNew)
	switch {
	case wasClean && !nowClean:
		return t.lruRemove(p)
	case !wasClean && nowClean:
		return t.LRUSet(p, t.now)
	}
	return nil
}

func (t *Tx) lruRemove(p string) error {
	at, ok, err := t.LRUGet(p)
	if err != nil || !ok {
		return err
	}
	if err := t.txn.Delete(LRUKey(at, p)); err != nil {
		return err
	}
	return t.txn.Delete(AccessKey(p))
}

// LRUSet moves p, a clean file, to access time at in the eviction order.
func (t *Tx) LRUSet(p string, at int64) error {
	if err := t.lruRemove(p); err != nil {
		return err
	}
	if err := t.txn.Set(LRUKey(at, p), nil); err != nil {
		return err
	}
	return t.txn.Set(AccessKey(p), binary.BigEndian.AppendUint64(nil, uint64(at)))
}

// Acct is the byte accounting the index keeps in step with its records.
type Acct struct {
	Used       int64 // bytes of local data files
	Dirty      int64 // bytes of files owing an upload
	DirtyFiles int64 // files owing an upload
}

// Update runs fn in a read-write transaction. If fn's writes change the
// accounting, base plus the change is written with them, and the change
// is returned once the transaction commits. touch is told of every record
// written or removed. Callers serialize their updates (and so the
// read-modify-write of base) under a lock of their own.
func (ix *DB) Update(base Acct, touch func(p string), fn func(t *Tx) error) (Acct, error) {
	return ix.updateTx(false, base, touch, fn)
}

// UpdateFreeing is Update for a write that makes room on the cache
// filesystem, or leads to it: an upload's steps, a delete, an eviction, a
// written file's commit. While the filesystem is near full it still runs,
// down to a lower floor, so that dirty files can go to the store and be
// evicted (see the package's space guard).
func (ix *DB) UpdateFreeing(base Acct, touch func(p string), fn func(t *Tx) error) (Acct, error) {
	return ix.updateTx(true, base, touch, fn)
}

func (ix *DB) updateTx(freeing bool, base Acct, touch func(p string), fn func(t *Tx) error) (Acct, error) {
	if touch == nil {
		touch = func(string) {}
	}
	ix.updates.Add(1)
	var t *Tx
	err := ix.updateAbove(freeing, func(txn *badger.Txn) error {
		t = &Tx{View: View{txn}, txn: txn, now: time.Now().UnixNano(), touch: touch}
		if err := fn(t); err != nil {
			return err
		}
		if t.delta == (Acct{}) {
			return nil
		}
		return txn.Set(AcctKey, Acct{base.Used + t.delta.Used, base.Dirty + t.delta.Dirty, base.DirtyFiles + t.delta.DirtyFiles}.Encode())
	})
	if err != nil {
		return Acct{}, err
	}
	return t.delta, nil
}

// Encode is a's value at the accounting key: three varints.
func (a Acct) Encode() []byte {
	b := binary.AppendVarint(nil, a.Used)
	b = binary.AppendVarint(b, a.Dirty)
	return binary.AppendVarint(b, a.DirtyFiles)
}

// LoadAcct reads the persisted byte accounting.
func (ix *DB) LoadAcct() (a Acct, err error) {
	err = ix.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(AcctKey)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			var vals [3]int64
			for i := range vals {
				x, n := binary.Varint(v)
				if n <= 0 {
					return fmt.Errorf("%w: accounting", ErrCorrupt)
				}
				vals[i], v = x, v[n:]
			}
			if len(v) != 0 {
				return fmt.Errorf("%w: accounting", ErrCorrupt)
			}
			a = Acct{vals[0], vals[1], vals[2]}
			return nil
		})
	})
	return a, err
}

// Writes of records and marks other than Put and Del, which keep the
// accounting: for them alone.

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

// SetPending owes the store an upload or a delete of p.
func (t *Tx) SetPending(p string) error { return t.txn.Set(PendingKey(p), nil) }

// ClearPending records that nothing is owed for p any more.
func (t *Tx) ClearPending(p string) error { return t.txn.Delete(PendingKey(p)) }

// HideTree hides everything the store holds below the directory p, in
// place of the hidden keys below it, which go in batches of their own
// (removeHiddenBelow).
func (t *Tx) HideTree(p string) error { return t.txn.Set(HiddenTreeKey(p), nil) }
