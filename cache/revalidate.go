package cache

import (
	"context"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/index"
)

// revalidateLater revalidates p in the background: the lookup that found
// it due is answered from the index at once, and one by another host
// deleted or rewritten is seen by the lookups after (see
// Options.RevalidateWaits). One HEAD per path is in flight at a time.
func (c *Cache) revalidateLater(p string, r index.Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.background(func(life context.Context) {
		ctx, cancel := context.WithTimeout(life, c.opts.StoreTimeout)
		defer cancel()
		c.revalidations.Do(p, func() (any, error) {
			_, err := c.revalidate(ctx, p, r)
			return nil, err
		})
	}) {
		return
	}
	c.verified[p] = time.Now() // the lookups meanwhile do not ask again
}

// revalidate asks the store whether a clean or remote file is still there
// and unchanged; another host may have deleted or rewritten it.
func (c *Cache) revalidate(ctx context.Context, p string, r index.Record) (Attr, error) {
	if r.MoveFrom != "" {
		return attrOf(r), nil // not at its key yet: nothing to compare
	}
	hctx, cancel := context.WithTimeout(ctx, c.opts.StoreTimeout)
	defer cancel()
	o, err := c.store.Head(hctx, p)
	size, mtime, meta := o.Size, o.MTime, o.Meta
	switch {
	case isNotFound(err):
		if c.forgetRemote(p, r) {
			return c.withOpenSize(p, attrOf(r)), nil
		}
		return Attr{}, ErrNotExist
	case err != nil:
		// Serve what we know; the store being away is no reason to fail.
		c.noteStoreError(err)
		c.log.Debug("revalidation failed; serving the index's view", "path", p, "err", err)
		return attrOf(r), nil
	}
	c.noteStoreOK()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.verified[p] = time.Now()
	changed := size != r.Size || (r.StoreMTime != 0 && mtime.UnixNano() != r.StoreMTime)
	if !changed && r.StoreMTime != 0 {
		return attrOf(r), nil
	}
	var out Attr
	err = c.updateLocked(func(t *index.Tx) error {
		cur, ok, err := t.Get(p)
		if err != nil || !ok || !sameVersion(cur, r) || (cur.State != Clean && cur.State != Remote) || c.open[p] != nil {
			if ok {
				out = attrOf(cur)
			}
			return err
		}
		cur.StoreMTime = mtime.UnixNano()
		if changed {
			c.log.Info("file changed in the store; dropping the local copy", "path", p, "size", size)
			c.data.Remove(cur.Data)
			cur.State, cur.Data, cur.Size, cur.MTime = Remote, "", size, mtime.UnixNano()
			cur.OwnerSet, cur.ModeSet, cur.Mode = false, false, 0
			applyMeta(&cur, meta)
		}
		out = attrOf(cur)
		return t.Put(p, cur)
	})
	if err != nil {
		return Attr{}, err
	}
	if out.Ino == 0 {
		return Attr{}, ErrNotExist
	}
	return out, nil
}

// sameVersion reports whether cur, the record at a path now, is still the
// version r was when the store was asked about it: a store answer is
// about that version, and says nothing of one written, uploaded or
// learned here since.
func sameVersion(cur, r index.Record) bool {
	return cur.Ino == r.Ino && cur.Gen == r.Gen && cur.Size == r.Size && cur.StoreMTime == r.StoreMTime
}
