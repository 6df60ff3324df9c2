package cache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// tx is a read-write index transaction that keeps the derived parts of the
// index in step with every record it writes: the byte accounting (local
// and dirty bytes) and the least-recently-used order of clean files. All
// record writes go through put and del, so no caller can forget either.
type tx struct {
	txn        *badger.Txn
	touch      func(p string) // told of every record written or removed
	now        int64          // unix nanoseconds, for new LRU entries
	usedDelta  int64
	dirtDelta  int64
	filesDelta int64 // dirty files
}

func (t *tx) get(p string) (record, bool, error) { return getRecord(t.txn, p) }

// put writes r at p.
func (t *tx) put(p string, r record) error {
	old, had, err := getRecord(t.txn, p)
	if err != nil {
		return err
	}
	if err := t.derive(p, old, had, r, true); err != nil {
		return err
	}
	t.touch(p)
	return putRecord(t.txn, p, r)
}

// del removes the record at p.
func (t *tx) del(p string) error {
	old, had, err := getRecord(t.txn, p)
	if err != nil || !had {
		return err
	}
	return t.delRead(p, old)
}

// delRead removes the record at p, which this transaction just read as old.
func (t *tx) delRead(p string, old record) error {
	if err := t.derive(p, old, true, record{}, false); err != nil {
		return err
	}
	t.touch(p)
	return deleteRecord(t.txn, p)
}

func localBytes(r record) int64 {
	if r.Dir || r.Data == "" {
		return 0
	}
	return r.Size
}

func dirtyBytes(r record) int64 {
	if !r.owesUpload() {
		return 0
	}
	return r.Size
}

// dirtyFiles counts r among the files owing an upload: 1 or 0.
func dirtyFiles(r record) int64 {
	if r.owesUpload() {
		return 1
	}
	return 0
}

// isClean says r may be evicted: a clean file whose object is at its own
// key (one still to be moved is not, as its bytes would then be nowhere
// the mount reads).
func isClean(r record, ok bool) bool { return ok && !r.Dir && r.State == Clean && r.MoveFrom == "" }

// derive updates accounting and LRU membership for a change from old to new.
func (t *tx) derive(p string, old record, hadOld bool, new record, hasNew bool) error {
	if hadOld {
		t.usedDelta -= localBytes(old)
		t.dirtDelta -= dirtyBytes(old)
		t.filesDelta -= dirtyFiles(old)
	}
	if hasNew {
		t.usedDelta += localBytes(new)
		t.dirtDelta += dirtyBytes(new)
		t.filesDelta += dirtyFiles(new)
	}
	wasClean, nowClean := isClean(old, hadOld), isClean(new, hasNew)
	switch {
	case wasClean && !nowClean:
		return t.lruRemove(p)
	case !wasClean && nowClean:
		return t.lruSet(p, t.now)
	}
	return nil
}

// lruGet returns p's last access time, if p is in the LRU order.
func lruGet(txn *badger.Txn, p string) (int64, bool, error) {
	item, err := txn.Get(accessKey(p))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	var at int64
	err = item.Value(func(v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("%w: access time of %q", errCorruptRecord, p)
		}
		at = int64(binary.BigEndian.Uint64(v))
		return nil
	})
	return at, true, err
}

func (t *tx) lruRemove(p string) error {
	at, ok, err := lruGet(t.txn, p)
	if err != nil || !ok {
		return err
	}
	if err := t.txn.Delete(lruKey(at, p)); err != nil {
		return err
	}
	return t.txn.Delete(accessKey(p))
}

// lruSet moves p to access time at.
func (t *tx) lruSet(p string, at int64) error {
	if err := t.lruRemove(p); err != nil {
		return err
	}
	if err := t.txn.Set(lruKey(at, p), nil); err != nil {
		return err
	}
	return t.txn.Set(accessKey(p), binary.BigEndian.AppendUint64(nil, uint64(at)))
}

// update runs fn in a read-write index transaction and, once it commits,
// applies its accounting. Callers hold c.mu, which also makes the
// read-modify-write of the counters safe.
func (c *Cache) update(fn func(t *tx) error) error {
	if c.closed.Load() {
		return ErrClosed
	}
	var t *tx
	c.stats.indexUpdates.Add(1)
	err := c.ix.db.Update(func(txn *badger.Txn) error {
		t = &tx{txn: txn, now: time.Now().UnixNano(), touch: c.touchedLocked}
		if err := fn(t); err != nil {
			return err
		}
		if t.usedDelta == 0 && t.dirtDelta == 0 && t.filesDelta == 0 {
			return nil
		}
		return txn.Set(acctKey, encodeAcct(c.used+t.usedDelta, c.dirty+t.dirtDelta, c.dirtyFiles+t.filesDelta))
	})
	if err != nil {
		return err
	}
	c.dirtyFiles += t.filesDelta
	if t.usedDelta != 0 || t.dirtDelta != 0 {
		c.used += t.usedDelta
		c.dirty += t.dirtDelta
		c.space.Broadcast()
		if c.opts.MaxSize > 0 && c.used > int64(float64(c.opts.MaxSize)*lowWater) {
			c.spaceKeeper.kickEvictor()
		}
	}
	return nil
}

// touchedLocked tells a listing in progress of p's directory that p
// changed meanwhile (see forgetUnlisted). Callers hold c.mu.
func (c *Cache) touchedLocked(p string) {
	if len(c.watches) == 0 {
		return
	}
	dir, name := splitPath(p)
	if w := c.watches[dir]; w != nil {
		w[name] = struct{}{}
	}
}

func encodeAcct(used, dirty, dirtyFiles int64) []byte {
	b := binary.AppendVarint(nil, used)
	b = binary.AppendVarint(b, dirty)
	return binary.AppendVarint(b, dirtyFiles)
}

// loadAcct reads the persisted byte accounting.
func loadAcct(db *badger.DB) (used, dirty, dirtyFiles int64, err error) {
	err = db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(acctKey)
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
					return fmt.Errorf("%w: accounting", errCorruptRecord)
				}
				vals[i], v = x, v[n:]
			}
			if len(v) != 0 {
				return fmt.Errorf("%w: accounting", errCorruptRecord)
			}
			used, dirty, dirtyFiles = vals[0], vals[1], vals[2]
			return nil
		})
	})
	return used, dirty, dirtyFiles, err
}
