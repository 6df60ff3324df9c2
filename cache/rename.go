package cache

import (
	"context"
)

// Rename moves the file oldp to newp, replacing a file there. The object
// moves too: an upload at the new key and a delete at the old one.
// Directories cannot be renamed (the store has no directories to move);
// the error maps to EXDEV, which makes mv(1) copy instead.
func (c *Cache) Rename(ctx context.Context, oldp, newp string) error {
	if err := c.checkPath(oldp); err != nil {
		return err
	}
	if err := c.checkPath(newp); err != nil {
		return err
	}
	if oldp == newp {
		return nil
	}
	for {
		fetchNeeded, err := c.renameLocal(oldp, newp)
		if err != nil {
			return wrapPath("rename", oldp, err)
		}
		if !fetchNeeded {
			return nil
		}
		// The new key needs the bytes, and only the store has them.
		if err := c.fetch(ctx, oldp); err != nil {
			return wrapPath("rename", oldp, err)
		}
	}
}

func (c *Cache) renameLocal(oldp, newp string) (fetchNeeded bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.removeFromSubtreesLocked(oldp)
	var src, dst record
	var dstOK, oldTomb bool
	err = c.update(func(t *tx) error {
		var ok bool
		var err error
		if src, ok, err = t.get(oldp); err != nil || !ok {
			return errorOr(err, ErrNotExist)
		}
		if src.Dir {
			return ErrCrossDevice
		}
		if src.State == Remote {
			fetchNeeded = true
			return nil
		}
		if dst, dstOK, err = t.get(newp); err != nil {
			return err
		}
		if dstOK && dst.Dir {
			return ErrIsDir
		}
		if parentDir, err := c.isDirTxn(t.txn, parentOf(newp)); err != nil || !parentDir {
			return errorOr(err, ErrNotExist)
		}
		newTomb, err := goneHere(t.txn, newp)
		if err != nil {
			return err
		}
		if err := t.txn.Delete(hiddenKey(newp)); err != nil {
			return err
		}
		if err := t.del(oldp); err != nil {
			return err
		}
		if err := c.forgetKey(t, oldp, src.InStore, &oldTomb); err != nil {
			return err
		}
		moved := src
		moved.Gen++
		moved.State = c.versionState(newp)
		moved.InStore = (dstOK && dst.InStore) || (!dstOK && newTomb)
		if err := t.put(newp, moved); err != nil {
			return err
		}
		if moved.State == Local && !moved.InStore {
			return clearPending(t.txn, newp)
		}
		return setPending(t.txn, newp)
	})
	if err != nil || fetchNeeded {
		return fetchNeeded, err
	}
	if dstOK {
		c.removeData(dst.Data)
		if of := c.open[newp]; of != nil {
			of.unlinked = true
			delete(c.open, newp)
		}
	}
	if of := c.open[oldp]; of != nil {
		delete(c.open, oldp)
		of.path = newp
		c.open[newp] = of
	}
	delete(c.verified, oldp)
	delete(c.verified, newp)
	c.negative.remove(newp)
	c.q.supersede(oldp)
	c.q.supersede(newp)
	if oldTomb {
		c.q.add(oldp)
	}
	c.q.add(newp)
	return false, nil
}
