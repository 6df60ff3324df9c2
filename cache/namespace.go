package cache

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
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

// Unlink removes the file p: the local copy goes at once, a pending upload
// is cancelled, and a tombstone in the index owes the store a delete.
func (c *Cache) Unlink(ctx context.Context, p string) error {
	if err := c.checkPath(p); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.removeFromSubtreesLocked(p)
	var r record
	tomb := false
	err := c.update(func(t *tx) error {
		var ok bool
		var err error
		if r, ok, err = t.get(p); err != nil || !ok {
			return errorOr(err, ErrNotExist)
		}
		if r.Dir {
			return ErrIsDir
		}
		if err := t.del(p); err != nil {
			return err
		}
		return c.forgetKey(t, p, r.InStore, &tomb)
	})
	if err != nil {
		return wrapPath("unlink", p, err)
	}
	if of := c.open[p]; of != nil {
		of.unlinked = true
		delete(c.open, p)
	}
	c.removeData(r.Data)
	delete(c.verified, p)
	c.q.supersede(p)
	if tomb {
		c.q.add(p)
	}
	return nil
}

// forgetKey settles the store's object at a key whose record is gone: a
// delete is owed if an object may exist (tomb is set), unless the mount
// keeps deleted objects, in which case the key is hidden instead.
func (c *Cache) forgetKey(t *tx, p string, inStore bool, tomb *bool) error {
	switch {
	case !inStore:
		// Never sent: nothing to delete in the store.
		return clearPending(t.txn, p)
	case c.opts.KeepDeletedInStore:
		if err := clearPending(t.txn, p); err != nil {
			return err
		}
		return t.txn.Set(hiddenKey(p), nil)
	}
	*tomb = true
	return setPending(t.txn, p)
}

// Rmdir removes the empty directory p. A directory whose objects are still
// in the store (and not being deleted) is not empty.
func (c *Cache) Rmdir(ctx context.Context, p string) error {
	if p == "" {
		return ErrInvalid
	}
	if err := c.checkPath(p); err != nil {
		return err
	}
	var r record
	if err := c.view(func(txn *badger.Txn) (err error) {
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
	if !known {
		// One LIST around p answers this rmdir and, as a rule, the one
		// of p's parent that a purge sends next.
		c.learnAround(lctx, parentOf(p))
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
	err = c.update(func(t *tx) error {
		if _, err := c.checkEmptyDirTxn(t.txn, p); err != nil {
			return err
		}
		switch {
		case !inStore:
		case c.opts.KeepDeletedInStore:
			// The objects below stay: one key hides them all.
			if err := hideTree(t.txn, p); err != nil {
				return err
			}
		default:
			if err := setPending(t.txn, folderKey(p)); err != nil {
				return err
			}
		}
		return t.del(p)
	})
	if err != nil {
		return wrapPath("rmdir", p, err)
	}
	switch {
	case !inStore:
	case c.opts.KeepDeletedInStore:
		c.removeHiddenBelowLocked(p)
	default:
		c.q.add(folderKey(p))
	}
	return nil
}

// removeHiddenBelowLocked drops the hidden keys below the directory p,
// now hidden as a whole, a batch at a time. Callers hold c.mu.
func (c *Cache) removeHiddenBelowLocked(p string) {
	for {
		n := 0
		err := c.update(func(t *tx) error {
			it := t.txn.NewIterator(badger.IteratorOptions{Prefix: belowPrefix(hiddenPrefix, p)})
			var keys [][]byte
			for it.Rewind(); it.Valid() && len(keys) < listPage; it.Next() {
				keys = append(keys, it.Item().KeyCopy(nil))
			}
			it.Close()
			n = len(keys)
			for _, k := range keys {
				if err := t.txn.Delete(k); err != nil {
					return err
				}
			}
			return nil
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
func (c *Cache) checkEmptyDirTxn(txn *badger.Txn, p string) (record, error) {
	r, ok, err := getRecord(txn, p)
	if err != nil || !ok {
		return r, errorOr(err, ErrNotExist)
	}
	if !r.Dir {
		return r, ErrNotDir
	}
	if has, err := hasChildren(txn, p); err != nil || has {
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
func (c *Cache) storeBelowKnown(p string, r record) (holds, known bool) {
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
	_, _, _, _, complete, err := c.store.Lookup(ctx, d, below.add)
	if err != nil {
		c.noteStoreError(err)
		return
	}
	if !complete {
		return // a large tree: the rmdir asks about its own
	}
	// Complete, and perhaps empty: the deletes just sent may all have
	// landed. "Nothing below d" is knowledge too.
	_ = c.view(func(txn *badger.Txn) error {
		for name := range below.files {
			if gone, err := goneHere(txn, joinPath(d, name)); err != nil || gone {
				below.remove(name)
			}
		}
		return nil
	})
	c.mu.Lock()
	c.keepSubtreeLocked(d, below)
	c.mu.Unlock()
}

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

// SetAttr changes the permission bits and/or the modification time of p.
func (c *Cache) SetAttr(ctx context.Context, p string, mode *uint32, mtime *time.Time) (Attr, error) {
	if p == "" {
		return c.setRoot(mode, nil) // the root's time is not kept
	}
	if err := c.checkPath(p); err != nil {
		return Attr{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var out Attr
	err := c.update(func(t *tx) error {
		r, ok, err := t.get(p)
		if err != nil || !ok {
			return errorOr(err, ErrNotExist)
		}
		if mode != nil {
			r.Mode = *mode & 0o7777
		}
		if mtime != nil {
			r.MTime = mtime.UnixNano()
			if r.Data != "" {
				// The data file's time is what the next flush records.
				if err := os.Chtimes(c.dataPath(r.Data), *mtime, *mtime); err != nil {
					return err
				}
			}
		}
		out = attrOf(r)
		return t.put(p, r)
	})
	if err != nil {
		return Attr{}, wrapPath("setattr", p, err)
	}
	if of := c.open[p]; of != nil {
		of.attr.Mode = out.Mode
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
