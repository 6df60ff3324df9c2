package cache

import (
	"context"
	"fmt"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/index"
)

// Attr describes a file or directory.
type Attr struct {
	Ino   uint64
	Dir   bool
	Size  int64
	MTime time.Time
	// ATime and CTime are the access and change times; MTime where the
	// file has none of its own.
	ATime, CTime time.Time
	Mode         uint32 // permission bits, when ModeSet
	ModeSet      bool   // false: the mount's file_mode or dir_mode
	State        State  // files only
	Unlinked     bool   // an open file whose name is gone
	Owner        *Owner // nil: the mount's uid and gid
	// Kind is syscall.S_IFLNK, S_IFIFO, S_IFSOCK, S_IFCHR or S_IFBLK for
	// those files, 0 for a regular file or a directory; Rdev is a device
	// node's number.
	Kind, Rdev uint32
	// Provisional: the owner, mode and modification time are the mount's
	// defaults and the listing's, because the object's metadata has not
	// been read yet (Lookup); Stat reads it.
	Provisional bool
}

// written is a as the open file's data says: its size and modification
// time. A write changes the inode, so the change time is never older; an
// access time never set apart from the modification time follows it.
func (a Attr) written(size int64, mtime time.Time) Attr {
	if a.ATime.Equal(a.MTime) {
		a.ATime = mtime
	}
	a.Size, a.MTime = size, mtime
	if mtime.After(a.CTime) {
		a.CTime = mtime
	}
	return a
}

func attrOf(r index.Record) Attr {
	a := Attr{Ino: r.Ino, Dir: r.Dir, Size: r.Size, MTime: time.Unix(0, r.MTime), Mode: r.Mode, ModeSet: r.ModeSet, State: r.State, Kind: r.Kind, Rdev: r.Rdev}
	// A write moves the modification time and not the kept change time;
	// the change time is never older than the last write.
	a.ATime, a.CTime = a.MTime, time.Unix(0, max(r.CTime, r.MTime))
	if r.ATime != 0 {
		a.ATime = time.Unix(0, r.ATime)
	}
	if r.OwnerSet {
		a.Owner = &Owner{UID: r.UID, GID: r.GID}
	}
	return a
}

// Stat looks p up: in the index first, then, for a name the index does not
// know, in the store (HEAD for a file, LIST for a directory). A store that
// cannot be reached makes an unknown name look absent rather than failing,
// so that creating new files goes on during an outage.
func (c *Cache) Stat(ctx context.Context, p string) (Attr, error) { return c.stat(ctx, p, true) }

// Lookup is Stat for resolving a name, which needs its type but not its
// owner or mode: a file known only from a listing is answered without
// reading its object's metadata, Provisional. The kernel asks again (Stat)
// before anything that needs them, so a purge of media never seen here
// sends no request per name. A file small enough to be a symlink (its
// type is in the metadata, and an inode cannot change type) is read as
// Stat reads it.
func (c *Cache) Lookup(ctx context.Context, p string) (Attr, error) { return c.stat(ctx, p, false) }

// maxSymlinkObject is the largest object that can hold a symlink: its
// target, at most PATH_MAX bytes with the terminating NUL.
const maxSymlinkObject = 4095

func (c *Cache) stat(ctx context.Context, p string, withMeta bool) (Attr, error) {
	if p == "" {
		return c.RootAttr(), nil
	}
	if err := c.checkPath(p); err != nil {
		return Attr{}, err
	}
	var r index.Record
	var ok, tomb, parentOK bool
	err := c.ix.View(func(txn index.View) error {
		var err error
		if r, ok, err = txn.Get(p); err != nil || ok {
			return err
		}
		if tomb, err = txn.GoneHere(p); err != nil || tomb {
			return err
		}
		parentOK, err = txn.IsDir(index.ParentOf(p))
		return err
	})
	if err != nil {
		return Attr{}, err
	}
	if ok {
		if !r.Dir && r.State == Local && !c.localOnly(p) {
			c.promoteLocal(p)
		}
		if !r.Dir && r.Stored() && c.dueForRevalidation(p) {
			if c.opts.RevalidateWaits {
				return c.revalidate(ctx, p, r)
			}
			c.revalidateLater(p, r)
		}
		if r.MetaUnknown && !c.opts.SkipObjectMeta {
			if withMeta || r.Size <= maxSymlinkObject {
				return c.learnMeta(ctx, p, r), nil
			}
			a := attrOf(r)
			a.Provisional = true
			return c.withOpenSize(p, a), nil
		}
		return c.withOpenSize(p, attrOf(r)), nil
	}
	if tomb || !parentOK {
		return Attr{}, ErrNotExist
	}
	a, err := c.lookupRemote(ctx, p)
	if err != nil || a.Dir {
		return a, err
	}
	// The LIST that found the object carries no metadata.
	return c.stat(ctx, p, withMeta)
}

// dueForRevalidation reports whether the store should be asked again
// whether the clean or remote file p is still what the index says.
func (c *Cache) dueForRevalidation(p string) bool {
	if c.opts.RevalidateAfter <= 0 || c.health.down.Load() {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if of := c.open[p]; of != nil {
		return false
	}
	at, ok := c.verified[p]
	return !ok || time.Since(at) > c.opts.RevalidateAfter
}

// withOpenSize reports the live size of a file open for writing.
func (c *Cache) withOpenSize(p string, a Attr) Attr {
	if a.Dir {
		return a
	}
	c.mu.Lock()
	of := c.open[p]
	c.mu.Unlock()
	if of != nil && of.live() {
		of.mu.RLock()
		if of.data != nil {
			if fi, err := of.data.Stat(); err == nil {
				a = a.written(fi.Size(), fi.ModTime())
			}
		}
		of.mu.RUnlock()
	}
	return a
}

// promoteLocal queues the upload of a local-only file whose tree now goes
// to the store (store_local or store_remote was switched on).
func (c *Cache) promoteLocal(p string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.updateLocked(func(t *index.Tx) error {
		r, ok, err := t.Get(p)
		if err != nil || !ok || r.Dir || r.State != Local {
			return err
		}
		r.State = Dirty
		r.Gen++
		if err := t.Put(p, r); err != nil {
			return err
		}
		return t.SetPending(p)
	})
	if err != nil {
		c.log.Error("queueing a formerly local-only file failed", "path", p, "err", err)
		return
	}
	c.q.Add(p)
}

// errorOr returns err if it is set, otherwise fallback.
func errorOr(err, fallback error) error {
	if err != nil {
		return err
	}
	return fallback
}

// wrapPath adds the path to an error for logs while keeping errors.Is.
func wrapPath(op, p string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s %q: %w", op, p, err)
}
