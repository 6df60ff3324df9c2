package cache

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/index"
)

// rootModeSet marks a root mode that was set, so that 0000 is a mode.
const rootModeSet = 0o10000

// Owner is a file's owner and group.
type Owner struct{ UID, GID uint32 }

// rootMeta is what is kept of the root: an unset mode and a nil owner
// mean the mount's defaults; zero times, the mount's start.
type rootMeta struct {
	mode         uint32
	modeSet      bool
	owner        *Owner
	mtime, ctime int64
}

func (m rootMeta) encode() []byte {
	var uid, gid uint64
	if m.owner != nil {
		uid, gid = uint64(m.owner.UID)+1, uint64(m.owner.GID)+1
	}
	mode := uint64(m.mode)
	if m.modeSet {
		mode |= rootModeSet
	}
	b := binary.AppendUvarint(nil, mode)
	b = binary.AppendUvarint(b, uid)
	b = binary.AppendUvarint(b, gid)
	b = binary.AppendVarint(b, m.mtime)
	return binary.AppendVarint(b, m.ctime)
}

func decodeRootMeta(b []byte) (rootMeta, error) {
	bad := fmt.Errorf("%w: root attributes", index.ErrCorrupt)
	var vals [3]uint64
	for i := range vals {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return rootMeta{}, bad
		}
		vals[i], b = v, b[n:]
	}
	if vals[0] > rootModeSet|0o7777 || vals[1] > 1<<32 || vals[2] > 1<<32 || (vals[1] == 0) != (vals[2] == 0) {
		return rootMeta{}, bad
	}
	// Before the set flag, a kept mode was never 0.
	m := rootMeta{mode: uint32(vals[0] & 0o7777), modeSet: vals[0] != 0}
	if vals[1] != 0 {
		m.owner = &Owner{UID: uint32(vals[1] - 1), GID: uint32(vals[2] - 1)}
	}
	if len(b) == 0 {
		return m, nil
	}
	var times [2]int64
	for i := range times {
		v, n := binary.Varint(b)
		if n <= 0 {
			return rootMeta{}, bad
		}
		times[i], b = v, b[n:]
	}
	if len(b) != 0 {
		return rootMeta{}, bad
	}
	m.mtime, m.ctime = times[0], times[1]
	return m, nil
}

func getRootMeta(txn index.View) (rootMeta, error) {
	b, ok, err := txn.RootValue()
	if err != nil || !ok {
		return rootMeta{}, err
	}
	return decodeRootMeta(b)
}

// touchParent moves the mtime and ctime of p's directory to now: a name
// in it came or went. A directory the index does not hold is left alone.
func touchParent(t *index.Tx, p string, now int64) error {
	dir := index.ParentOf(p)
	if dir == "" {
		m, err := getRootMeta(t.View)
		if err != nil {
			return err
		}
		m.mtime, m.ctime = now, now
		return t.SetRootValue(m.encode())
	}
	r, ok, err := t.Get(dir)
	if err != nil || !ok || !r.Dir {
		return err
	}
	r.MTime, r.CTime = now, now
	return t.Put(dir, r)
}

// RootAttr describes the mount's root directory.
func (c *Cache) RootAttr() Attr {
	a := Attr{Ino: index.RootIno, Dir: true}
	var m rootMeta
	if err := c.view(func(txn index.View) (err error) {
		m, err = getRootMeta(txn)
		return err
	}); err != nil {
		c.log.Error("reading the root's attributes failed; showing the defaults", "err", err)
	}
	a.Mode, a.ModeSet, a.Owner = m.mode, m.modeSet, m.owner
	if m.mtime != 0 {
		a.MTime, a.ATime, a.CTime = time.Unix(0, m.mtime), time.Unix(0, m.mtime), time.Unix(0, m.ctime)
	}
	return a
}

// setRoot changes the root's permission bits, owner and modification
// time (its access time is its modification time).
func (c *Cache) setRoot(ch AttrChange) (Attr, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.updateLocked(func(t *index.Tx) error {
		m, err := getRootMeta(t.View)
		if err != nil {
			return err
		}
		if ch.Mode != nil {
			m.mode, m.modeSet = *ch.Mode&0o7777, true
		}
		if ch.Owner != nil {
			m.owner = ch.Owner
		}
		m.ctime = time.Now().UnixNano()
		switch {
		case ch.MTime != nil:
			m.mtime = ch.MTime.UnixNano()
		case m.mtime == 0:
			m.mtime = m.ctime
		}
		return t.SetRootValue(m.encode())
	})
	if err != nil {
		return Attr{}, err
	}
	return c.RootAttr(), nil
}
