package cache

import (
	"context"
	"os"
	"syscall"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/index"
)

// NewFile is who makes a new file and with what permission bits.
type NewFile struct {
	// Mode is the permission bits (with setuid, setgid and sticky).
	// Without an Owner, 0 means the mount's file_mode or dir_mode.
	Mode uint32
	// Owner is the new file's owner and group; nil: the mount's uid and
	// gid (as every file had before owners were kept).
	Owner *Owner
	// Link, when not empty, makes the file a symlink to it (see Symlink).
	Link string
}

func (n NewFile) stamp(r *index.Record) {
	r.Mode, r.ModeSet = n.Mode&0o7777, n.Mode != 0 || n.Owner != nil
	if n.Owner != nil {
		r.OwnerSet, r.UID, r.GID = true, n.Owner.UID, n.Owner.GID
	}
	if n.Link != "" {
		r.Kind, r.Link = syscall.S_IFLNK, n.Link
	}
}

// Create makes a new, empty file at p and opens it. If p exists, it is
// opened instead (with flags), unless flags has O_EXCL.
func (c *Cache) Create(ctx context.Context, p string, flags int, nf NewFile) (*Handle, Attr, error) {
	if p == "" {
		return nil, Attr{}, ErrIsDir
	}
	if err := c.checkPath(p); err != nil {
		return nil, Attr{}, err
	}
	if err := c.admit(ctx, 0, true, c.opts.SpaceWait); err != nil {
		return nil, Attr{}, wrapPath("create", p, err)
	}
	id, f, err := c.data.New()
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
	var r index.Record
	exists := false
	err = c.updateLocked(func(t *index.Tx) error {
		cur, ok, err := t.Get(p)
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
		ino, tomb, err := c.newFileTxn(t, p)
		if err != nil {
			return err
		}
		r = index.Record{State: c.versionState(p), Ino: ino, Gen: 1, Data: id, MTime: created.UnixNano(), InStore: tomb}
		nf.stamp(&r)
		if err := t.Put(p, r); err != nil {
			return err
		}
		if err := touchParent(t, p, r.MTime); err != nil {
			return err
		}
		if r.State == Local && !tomb {
			return nil
		}
		return t.SetPending(p)
	})
	if err != nil || exists {
		c.mu.Unlock()
		f.Close()
		c.data.Remove(id)
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
	c.q.Supersede(p)
	c.mu.Unlock()
	return &Handle{c: c, of: of, writable: true}, attrOf(r), nil
}

// newFileTxn readies the making of a file at p, which has no record: its
// parent must be a directory, the key is claimed (see claimKey), and an
// inode number is allocated.
func (c *Cache) newFileTxn(t *index.Tx, p string) (ino uint64, tomb bool, err error) {
	if parentDir, err := t.IsDir(index.ParentOf(p)); err != nil || !parentDir {
		return 0, false, errorOr(err, ErrNotExist)
	}
	if tomb, err = claimKey(t, p); err != nil {
		return 0, false, err
	}
	ino, err = c.ix.NextIno()
	return ino, tomb, err
}

// claimKey readies the key of a new file at p: a pending delete there
// becomes the new file's upload (the new object replaces the old one,
// and the key stays owed), and a hidden object is replaced the same way.
// tomb reports that an object may exist at the key.
func claimKey(t *index.Tx, p string) (tomb bool, err error) {
	if tomb, err = t.HasPending(p); err != nil {
		return false, err
	}
	hidden, err := t.IsHidden(p)
	if err != nil || !hidden {
		return tomb, err
	}
	return true, t.Unhide(p)
}

// Mkdir creates the directory p.
func (c *Cache) Mkdir(ctx context.Context, p string, nf NewFile) (Attr, error) {
	if p == "" {
		return Attr{}, ErrExist
	}
	if err := c.checkPath(p); err != nil {
		return Attr{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var r index.Record
	err := c.updateLocked(func(t *index.Tx) error {
		if _, ok, err := t.Get(p); err != nil || ok {
			return errorOr(err, ErrExist)
		}
		if parentDir, err := t.IsDir(index.ParentOf(p)); err != nil || !parentDir {
			return errorOr(err, ErrNotExist)
		}
		ino, err := c.ix.NextIno()
		if err != nil {
			return err
		}
		r = index.Record{Dir: true, Ino: ino, MTime: time.Now().UnixNano(), MadeHere: true}
		nf.stamp(&r)
		if err := t.Put(p, r); err != nil {
			return err
		}
		return touchParent(t, p, r.MTime)
	})
	if err != nil {
		return Attr{}, wrapPath("mkdir", p, err)
	}
	c.negative.remove(p)
	if c.opts.MadeDirTrust > 0 {
		c.made.set(p, time.Now())
	}
	return attrOf(r), nil
}
