package cache

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/index"
)

// Unlink removes the file p: the local copy goes at once, a pending upload
// is cancelled, and a tombstone in the index owes the store a delete.
func (c *Cache) Unlink(ctx context.Context, p string) error {
	if err := c.checkPath(p); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.removeFromSubtreesLocked(p)
	var r index.Record
	tomb := false
	err := c.updateFreeingLocked(func(t *index.Tx) error {
		var ok bool
		var err error
		if r, ok, err = t.Get(p); err != nil || !ok {
			return errorOr(err, ErrNotExist)
		}
		if r.Dir {
			return ErrIsDir
		}
		if err := t.Del(p); err != nil {
			return err
		}
		if err := touchParent(t, p, time.Now().UnixNano()); err != nil {
			return err
		}
		return c.forgetKey(t, p, r.InStore, &tomb)
	})
	if err != nil {
		return wrapPath("unlink", p, err)
	}
	c.detachLocked(p)
	c.data.Remove(r.Data)
	delete(c.verified, p)
	c.q.Supersede(p)
	if tomb {
		c.q.Add(p)
	}
	if r.MoveFrom != "" {
		c.q.Add(r.MoveFrom) // its object's owed move is moot: delete it
	}
	if r.State == Remote {
		c.purgeAheadLocked()
	}
	return nil
}

// forgetKey settles the store's object at a key whose record is gone: a
// delete is owed if an object may exist (tomb is set), unless the mount
// keeps deleted objects, in which case the key is hidden instead.
func (c *Cache) forgetKey(t *index.Tx, p string, inStore bool, tomb *bool) error {
	switch {
	case !inStore:
		// Never sent: nothing to delete in the store.
		return t.ClearPending(p)
	case c.opts.KeepDeletedInStore:
		if err := t.ClearPending(p); err != nil {
			return err
		}
		return t.Hide(p)
	}
	*tomb = true
	return t.SetPending(p)
}

// Rmdir removes the empty directory p. A directory whose objects are still
// in the store (and not being deleted) is not empty; unless
// Options.RmdirWaitsForStore, the store is asked about objects the index
// does not know of (another host's) only after the answer, in the
// background.
func (c *Cache) Rmdir(ctx context.Context, p string) error {
	if p == "" {
		return ErrInvalid
	}
	if err := c.checkPath(p); err != nil {
		return err
	}
	var r index.Record
	if err := c.ix.View(func(txn index.View) (err error) {
		r, err = c.checkEmptyDirTxn(txn, p)
		return err
	}); err != nil {
		return wrapPath("rmdir", p, err)
	}
	// Not cut short by a signal to the caller (FUSE_INTERRUPT): rmdir(2)
	// has no EINTR to give, and callers do not retry one.
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.StoreTimeout)
	defer cancel()
	remote, known := false, c.localOnly(p)
	if !known {
		remote, known = c.storeBelowKnown(p, r)
	}
	checkLater := false
	if !known && !c.opts.RmdirWaitsForStore && !c.opts.KeepDeletedInStore {
		// The index's word: it lists nothing below p. Only another
		// host's objects could lie there, and they show again after
		// the background check (or at p's next lookup).
		remote, known, checkLater = false, true, true
	}
	if !known {
		// One LIST around p answers this rmdir and, as a rule, the one
		// of p's parent that a purge sends next.
		c.learnAround(lctx, index.ParentOf(p))
		remote, known = c.storeBelowKnown(p, r)
	}
	var err error
	if !known {
		remote, err = c.remoteDirExists(lctx, p)
	}
	if err != nil {
		c.noteStoreError(err)
		return wrapPath("rmdir", p, fmt.Errorf("%w: %w", ErrStore, err))
	}
	if remote {
		return wrapPath("rmdir", p, ErrNotEmpty)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.removeFromSubtreesLocked(p)
	inStore := !c.localOnly(p)
	err = c.updateFreeingLocked(func(t *index.Tx) error {
		if _, err := c.checkEmptyDirTxn(t.View, p); err != nil {
			return err
		}
		switch {
		case !inStore:
		case c.opts.KeepDeletedInStore:
			// The objects below stay: one key hides them all.
			if err := t.HideTree(p); err != nil {
				return err
			}
		default:
			if err := t.SetPending(folderKey(p)); err != nil {
				return err
			}
		}
		if err := touchParent(t, p, time.Now().UnixNano()); err != nil {
			return err
		}
		return t.Del(p)
	})
	if err != nil {
		return wrapPath("rmdir", p, err)
	}
	switch {
	case !inStore:
	case c.opts.KeepDeletedInStore:
		c.removeHiddenBelowLocked(p)
	default:
		c.q.Add(folderKey(p))
	}
	if checkLater {
		c.rmdirChecks.add(p)
	}
	return nil
}

// removeHiddenBelowLocked drops the hidden keys below the directory p,
// now hidden as a whole, a batch at a time. Callers hold c.mu.
func (c *Cache) removeHiddenBelowLocked(p string) {
	for {
		n := 0
		err := c.updateFreeingLocked(func(t *index.Tx) error {
			var err error
			n, err = t.UnhideBelow(p, listPage)
			return err
		})
		if err != nil {
			c.log.Warn("dropping hidden keys below a removed directory failed; they stay, harmless", "dir", p, "err", err)
			return
		}
		if n < listPage {
			return
		}
	}
}

// folderKey is the key of the directory p itself ("p/"). Some stores
// (SeaweedFS) keep a directory's folder after its last object is deleted
// and list it as a common prefix, and tools such as s3fs make folder
// objects for empty directories: a removed directory owes a DELETE of its
// folder key, sent once no delete is owed below it. Every store here
// removes only an empty folder that way, never the objects below one.
func folderKey(p string) string { return p + "/" }

// isFolderKey reports whether an owed key is a folder key.
func isFolderKey(k string) bool { return strings.HasSuffix(k, "/") }

// checkEmptyDirTxn returns the record of p if p is a directory with no
// entries in the index.
func (c *Cache) checkEmptyDirTxn(txn index.View, p string) (index.Record, error) {
	r, ok, err := txn.Get(p)
	if err != nil || !ok {
		return r, errorOr(err, ErrNotExist)
	}
	if !r.Dir {
		return r, ErrNotDir
	}
	if has, err := txn.HasChildren(p); err != nil || has {
		return r, errorOr(err, ErrNotEmpty)
	}
	return r, nil
}

// storeBelowKnown reports, without asking the store, whether it holds
// objects this mount has not removed below the directory p (whose record
// is r); known is false when only the store can tell. The index knows
// all of them when p was made here or listed within NegativeTTL (and it
// holds none, or rmdir would not ask); a lookup that learned the whole
// tree around p within NegativeTTL (a subtree) knows them too.
//
// Where another host shares the bucket, a directory made here may hold
// that host's files all the same. Removing it then forgets only this
// host's record of it; the files stay in S3 and the directory shows
// again on the next lookup, which is what a purge that just emptied it
// may expect (Synapse ignores rmdir's answer), and it saves the LIST per
// purged media that would otherwise bound a purge by the store's latency.
func (c *Cache) storeBelowKnown(p string, r index.Record) (holds, known bool) {
	if r.MadeHere {
		return false, true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if at, ok := c.listed.get(p); ok && time.Since(at) < c.opts.NegativeTTL {
		return false, true
	}
	// A subtree is kept in step with this mount's removals, so for an
	// rmdir it is as good as the index is for a directory made here:
	// trusted as long as a clean file's presence is (RevalidateAfter).
	empty, known := c.subtreeEmptyBelowLocked(p, c.subtreeAge())
	return !empty, known
}

// learnAround asks the store, with one lookup LIST, about the tree of the
// directory d, and keeps it as a subtree when one page holds it whole,
// less what is being removed here. An rmdir of a child of d then knows
// its answer, and so does the rmdir of d that a purge sends next.
func (c *Cache) learnAround(ctx context.Context, d string) {
	if d == "" {
		return
	}
	asked := time.Now()
	below := newSubtree(asked)
	found, err := c.store.Lookup(ctx, d, below.add)
	if err != nil {
		c.noteStoreError(err)
		return
	}
	if !found.Complete {
		return // a large tree: the rmdir asks about its own
	}
	// Complete, and perhaps empty: the deletes just sent may all have
	// landed. "Nothing below d" is knowledge too.
	err = c.ix.View(func(txn index.View) error {
		for name := range below.files {
			gone, err := txn.GoneHere(index.JoinPath(d, name))
			if err != nil {
				return err
			}
			if gone {
				below.remove(name)
			}
		}
		return nil
	})
	if err != nil {
		c.log.Warn("index read failed; the directory is listed again at its next lookup", "path", d, "err", err)
		return
	}
	c.mu.Lock()
	c.keepSubtreeLocked(d, below)
	c.mu.Unlock()
}
