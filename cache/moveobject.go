package cache

import (
	"context"
	"fmt"

	"github.com/s3mediafs/s3mediafs/cache/index"
)

// The store's side of a directory rename (see renamedir.go): each moved
// object is copied to its new key, then its old key is deleted.

// moveStillOwed reports whether a move out of src is still owed: its
// mark names a record that still says its object sits at src.
func moveStillOwed(txn index.View, src string) (bool, error) {
	owner, ok, err := txn.MoveOwner(src)
	if err != nil || !ok {
		return false, err
	}
	r, ok, err := txn.Get(owner)
	if err != nil || !ok {
		return false, err
	}
	return r.MoveFrom == src, nil
}

// waitForMove reports whether the key p still has an object a rename has
// to move away, so that nothing may be written or deleted there until the
// move, which queues p again, is done. A mark outliving its move goes.
func waitForMove(t *index.Tx, p string) (bool, error) {
	if _, marked, err := t.MoveOwner(p); err != nil || !marked {
		return false, err
	}
	if owed, err := moveStillOwed(t.View, p); err != nil || owed {
		return owed, err
	}
	return false, t.ClearMoveSource(p)
}

// reuploadMoved moves an object too large for one CopyObject by sending
// its bytes to the new key: fetched from the old key if they are not
// here, then uploaded as a new version, whose upload deletes the old key.
func (c *Cache) reuploadMoved(ctx context.Context, p string, r index.Record) (again bool, err error) {
	if r.State == Remote {
		if err := c.fetch(ctx, p); err != nil {
			return false, fmt.Errorf("move %q to %q: %w", r.MoveFrom, p, err)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	err = c.updateFreeingLocked(func(t *index.Tx) error {
		cur, ok, err := t.Get(p)
		if err != nil || !ok || cur.Ino != r.Ino || cur.MoveFrom != r.MoveFrom || cur.State != Clean {
			return err // changed meanwhile: looked at again below
		}
		cur.State, cur.Gen = Dirty, cur.Gen+1
		return t.Put(p, cur)
	})
	return true, err
}

// objectKeyOf is the key the object of the file at p sits at now.
func (c *Cache) objectKeyOf(p string) (string, error) {
	var r index.Record
	err := c.ix.View(func(txn index.View) (err error) {
		r, _, err = txn.Get(p)
		return err
	})
	return r.ObjectKey(p), err
}

// moveObject carries out the owed move of p's object from r.MoveFrom (see
// the top of this file): copy, then forget the old key, then delete it.
func (c *Cache) moveObject(ctx context.Context, p string, r index.Record) (again bool, err error) {
	src := r.MoveFrom
	if r.Size >= maxCopySize {
		return c.reuploadMoved(ctx, p, r)
	}
	if r.MetaUnknown {
		// The copy replaces the metadata: read what the object carries
		// (another tool's owner and mode) so that it is carried over.
		o, err := c.store.Head(ctx, src)
		if err != nil && !isNotFound(err) {
			return false, err
		}
		if err == nil {
			applyMeta(&r, o.Meta)
		}
	}
	err = c.store.Copy(ctx, src, p, metaOf(r))
	if isNotFound(err) {
		// Copied before a stop, or removed by another host.
		_, herr := c.store.Head(ctx, p)
		if herr != nil {
			if isNotFound(herr) {
				c.log.Error("an object to move is in neither place; another host removed it", "from", src, "to", p)
			} else {
				return false, herr
			}
		}
	} else if err != nil {
		return false, err
	}
	c.noteStoreOK()
	c.mu.Lock()
	err = c.updateFreeingLocked(func(t *index.Tx) error {
		cur, ok, err := t.Get(p)
		if err != nil || !ok || cur.Ino != r.Ino || cur.MoveFrom != src {
			again = err == nil
			return err
		}
		cur.MoveFrom = ""
		cur.StoreMTime = 0 // the copy is a new object
		if cur.MetaUnknown && !r.MetaUnknown {
			cur.MetaUnknown, cur.OwnerSet, cur.UID, cur.GID = false, r.OwnerSet, r.UID, r.GID
			cur.ModeSet, cur.Mode, cur.MTime = r.ModeSet, r.Mode, r.MTime
		}
		if cur.CTime == r.CTime {
			cur.MetaOwed = false // the copy carried the metadata
		}
		if err := t.Put(p, cur); err != nil {
			return err
		}
		if cur.Stored() && !cur.MetaOwed {
			return t.ClearPending(p)
		}
		again = true
		return nil
	})
	c.mu.Unlock()
	if err != nil {
		return false, err
	}
	// The old key's owed delete runs now that no record reads from it.
	c.q.Add(src)
	return again, nil
}
