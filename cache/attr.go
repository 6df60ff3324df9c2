package cache

import (
	"context"
	"os"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/index"
)

// AttrChange is what a setattr changes; nil fields stay as they are.
type AttrChange struct {
	Mode         *uint32 // permission bits, setuid, setgid and sticky
	Owner        *Owner  // both IDs: the caller resolves a chown of one
	ATime, MTime *time.Time
}

// travels reports whether the change touches what the object's metadata
// carries (see meta.go); the access time does not travel.
func (ch AttrChange) travels() bool {
	return ch.Mode != nil || ch.Owner != nil || ch.MTime != nil
}

func (ch AttrChange) apply(r *index.Record) {
	if ch.Mode != nil {
		r.Mode, r.ModeSet = *ch.Mode&0o7777, true
	}
	if ch.Owner != nil {
		r.OwnerSet, r.UID, r.GID = true, ch.Owner.UID, ch.Owner.GID
	}
	if ch.MTime != nil {
		r.MTime = ch.MTime.UnixNano()
	}
	if ch.ATime != nil {
		r.ATime = ch.ATime.UnixNano()
	}
	r.CTime = time.Now().UnixNano()
}

// SetAttr changes the owner, permission bits and times of p. The kernel
// has checked that the caller may (the mount uses default_permissions).
// A change to what travels with the object (owner, mode, mtime) of a
// file already sent owes the store a metadata-only update, which the
// upload queue sends and retries like an upload.
func (c *Cache) SetAttr(ctx context.Context, p string, ch AttrChange) (Attr, error) {
	if p == "" {
		return c.setRoot(ch)
	}
	if err := c.checkPath(p); err != nil {
		return Attr{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var out Attr
	owed := false
	err := c.updateLocked(func(t *index.Tx) error {
		r, ok, err := t.Get(p)
		if err != nil || !ok {
			return errorOr(err, ErrNotExist)
		}
		ch.apply(&r)
		if ch.MTime != nil && r.Data != "" {
			// The data file's time is what the next flush records.
			if err := os.Chtimes(c.data.Path(r.Data), time.Time{}, *ch.MTime); err != nil {
				return err
			}
		}
		if ch.travels() && !r.Dir && r.InStore && (r.State == Uploading || r.State == Clean || r.State == Remote) {
			// A dirty file's next upload carries the change; one in
			// flight or done needs a metadata update after it.
			r.MetaOwed, owed = true, true
			if err := t.SetPending(p); err != nil {
				return err
			}
		}
		out = attrOf(r)
		return t.Put(p, r)
	})
	if err != nil {
		return Attr{}, wrapPath("setattr", p, err)
	}
	if of := c.open[p]; of != nil {
		of.attr = out
	}
	if owed {
		c.q.Add(p)
	}
	return out, nil
}

// Truncate sets the size of the file at p.
func (c *Cache) Truncate(ctx context.Context, p string, size int64) error {
	flags := os.O_WRONLY
	if size == 0 {
		flags |= os.O_TRUNC // no need to fetch bytes that are thrown away
	}
	h, err := c.OpenFile(ctx, p, flags)
	if err != nil {
		return err
	}
	err = h.Truncate(ctx, size)
	if ferr := h.Flush(ctx); err == nil {
		err = ferr
	}
	h.Release(ctx)
	return err
}
