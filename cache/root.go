package cache

import (
	"time"

	"github.com/s3mediafs/s3mediafs/cache/index"
)

// Owner is a file's owner and group.
type Owner struct{ UID, GID uint32 }

// touchParent moves the mtime and ctime of p's directory to now: a name
// in it came or went. A directory the index does not hold is left alone.
func touchParent(t *index.Tx, p string, now int64) error {
	dir := index.ParentOf(p)
	if dir == "" {
		m, err := t.Root()
		if err != nil {
			return err
		}
		m.MTime, m.CTime = now, now
		return t.SetRoot(m)
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
	var m index.RootAttrs
	if err := c.ix.View(func(txn index.View) (err error) {
		m, err = txn.Root()
		return err
	}); err != nil {
		c.log.Error("reading the root's attributes failed; showing the defaults", "err", err)
	}
	a.Mode, a.ModeSet = m.Mode, m.ModeSet
	if m.OwnerSet {
		a.Owner = &Owner{UID: m.UID, GID: m.GID}
	}
	if m.MTime != 0 {
		a.MTime, a.ATime, a.CTime = time.Unix(0, m.MTime), time.Unix(0, m.MTime), time.Unix(0, m.CTime)
	}
	return a
}

// setRoot changes the root's permission bits, owner and modification
// time (its access time is its modification time).
func (c *Cache) setRoot(ch AttrChange) (Attr, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.updateLocked(func(t *index.Tx) error {
		m, err := t.Root()
		if err != nil {
			return err
		}
		if ch.Mode != nil {
			m.Mode, m.ModeSet = *ch.Mode&0o7777, true
		}
		if ch.Owner != nil {
			m.OwnerSet, m.UID, m.GID = true, ch.Owner.UID, ch.Owner.GID
		}
		m.CTime = time.Now().UnixNano()
		switch {
		case ch.MTime != nil:
			m.MTime = ch.MTime.UnixNano()
		case m.MTime == 0:
			m.MTime = m.CTime
		}
		return t.SetRoot(m)
	})
	if err != nil {
		return Attr{}, err
	}
	return c.RootAttr(), nil
}
