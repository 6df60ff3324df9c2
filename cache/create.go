package cache

import (
	"context"
	"os"
	"time"
)

// Create makes a new, empty file at p and opens it. If p exists, it is
// opened instead (with flags), unless flags has O_EXCL.
func (c *Cache) Create(ctx context.Context, p string, flags int, mode uint32) (*Handle, Attr, error) {
	if p == "" {
		return nil, Attr{}, ErrIsDir
	}
	if err := c.checkPath(p); err != nil {
		return nil, Attr{}, err
	}
	if err := c.admit(ctx, 0, true, c.opts.SpaceWait); err != nil {
		return nil, Attr{}, wrapPath("create", p, err)
	}
	id, f, err := c.newData()
	if err != nil {
		return nil, Attr{}, err
	}
	// The record starts with the data file's own time, so that what the
	// kernel caches now agrees with what fstat reports later.
	created := time.Now()
	if fi, err := f.Stat(); err == nil {
		created = fi.ModTime()
	}
	c.mu.Lock()
	var r record
	exists := false
	err = c.update(func(t *tx) error {
		cur, ok, err := t.get(p)
		if err != nil {
			return err
		}
		if ok {
			if cur.Dir {
				return ErrIsDir
			}
			exists = true
			return nil
		}
		if parentDir, err := c.isDirTxn(t.txn, parentOf(p)); err != nil || !parentDir {
			return errorOr(err, ErrNotExist)
		}
		// A pending delete at this key becomes an upload: the new object
		// replaces the old one, and the key stays owed. A hidden object
		// is replaced the same way.
		tomb, err := hasPending(t.txn, p)
		if err != nil {
			return err
		}
		if hidden, err := isHidden(t.txn, p); err != nil {
			return err
		} else if hidden {
			tomb = true
			if err := t.txn.Delete(hiddenKey(p)); err != nil {
				return err
			}
		}
		ino, err := c.ix.nextIno()
		if err != nil {
			return err
		}
		r = record{State: c.versionState(p), Ino: ino, Gen: 1, Data: id, MTime: created.UnixNano(), InStore: tomb, Mode: mode & 0o7777}
		if err := t.put(p, r); err != nil {
			return err
		}
		if r.State == Local && !tomb {
			return nil
		}
		return setPending(t.txn, p)
	})
	if err != nil || exists {
		c.mu.Unlock()
		f.Close()
		c.removeData(id)
		if err != nil {
			return nil, Attr{}, wrapPath("create", p, err)
		}
		if flags&os.O_EXCL != 0 {
			return nil, Attr{}, wrapPath("create", p, ErrExist)
		}
		h, err := c.OpenFile(ctx, p, flags)
		if err != nil {
			return nil, Attr{}, err
		}
		a, err := c.Stat(ctx, p)
		if err != nil {
			h.Release(ctx)
			return nil, Attr{}, err
		}
		return h, a, nil
	}
	c.negative.remove(p)
	of := &openFile{path: p, data: f, refs: 1, attr: attrOf(r)}
	of.dirty.Store(true)
	if old := c.open[p]; old != nil {
		old.unlinked = true
	}
	c.open[p] = of
	c.q.supersede(p)
	c.mu.Unlock()
	return &Handle{c: c, of: of, writable: true}, attrOf(r), nil
}

// Mkdir creates the directory p.
func (c *Cache) Mkdir(ctx context.Context, p string, mode uint32) (Attr, error) {
	if p == "" {
		return Attr{}, ErrExist
	}
	if err := c.checkPath(p); err != nil {
		return Attr{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var r record
	err := c.update(func(t *tx) error {
		if _, ok, err := t.get(p); err != nil || ok {
			return errorOr(err, ErrExist)
		}
		if parentDir, err := c.isDirTxn(t.txn, parentOf(p)); err != nil || !parentDir {
			return errorOr(err, ErrNotExist)
		}
		ino, err := c.ix.nextIno()
		if err != nil {
			return err
		}
		r = record{Dir: true, Ino: ino, MTime: time.Now().UnixNano(), Mode: mode & 0o7777, MadeHere: true}
		return t.put(p, r)
	})
	if err != nil {
		return Attr{}, wrapPath("mkdir", p, err)
	}
	c.negative.remove(p)
	return attrOf(r), nil
}
