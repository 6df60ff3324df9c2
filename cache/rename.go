package cache

import (
	"context"
	"errors"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/index"
)

// errDirRename sends a rename of a directory to renameDir.
var errDirRename = errors.New("directory rename")

// Rename moves the file oldp to newp, replacing a file there. The object
// moves too: a server-side copy to the new key and a delete of the old
// one when the store has this version, or else an upload at the new key.
// A directory moves with everything below it (see renamedir.go).
func (c *Cache) Rename(ctx context.Context, oldp, newp string) error {
	return c.rename(ctx, oldp, newp, false)
}

// RenameNoReplace is Rename that fails with ErrExist when newp exists
// (rename(2)'s RENAME_NOREPLACE), decided in the transaction that moves
// the record, under the lock every index change takes.
func (c *Cache) RenameNoReplace(ctx context.Context, oldp, newp string) error {
	return c.rename(ctx, oldp, newp, true)
}

func (c *Cache) rename(ctx context.Context, oldp, newp string, noReplace bool) error {
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
		fetchNeeded, err := c.renameLocal(oldp, newp, noReplace)
		if errors.Is(err, errDirRename) {
			if err := c.renameDir(ctx, oldp, newp, noReplace); err != nil {
				return wrapPath("rename", oldp, err)
			}
			return nil
		}
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

// putRenamedTxn writes the record of a file renamed to newp and owes the
// store what that takes. A special file stays index-only; a file's bytes
// are here and go up whole at the new key, so an owed move of its object
// is moot: its source is deleted once nothing reads it (the caller queues
// it; its mark, naming the old path, no longer holds it).
func (c *Cache) putRenamedTxn(t *index.Tx, newp string, moved index.Record) error {
	if moved.State != Special {
		moved.MoveFrom = ""
		moved.Gen++
		moved.State = c.versionState(newp)
	}
	if err := t.Put(newp, moved); err != nil {
		return err
	}
	// An object it replaced at newp is deleted (a special file), or
	// replaced by the upload owed.
	if (moved.State == Special || moved.State == Local) && !moved.InStore {
		return t.ClearPending(newp)
	}
	return t.SetPending(newp)
}

func (c *Cache) renameLocal(oldp, newp string, noReplace bool) (fetchNeeded bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.removeFromSubtreesLocked(oldp)
	var fr fileRename
	err = c.updateLocked(func(t *index.Tx) error { return c.renameFileTxn(t, oldp, newp, noReplace, &fr) })
	if err != nil || fr.fetchNeeded {
		return fr.fetchNeeded, err
	}
	c.renamedLocked(oldp, newp, &fr)
	return false, nil
}

// fileRename is what renameFileTxn found and did, for the bookkeeping
// after its transaction commits.
type fileRename struct {
	fetchNeeded bool         // the bytes must be fetched first (into a local-only tree)
	dst         index.Record // the file replaced at the new name, if dstOK
	dstOK       bool
	oldTomb     bool     // the old key owes the store a DELETE
	moveSrc     string   // a server-side move the file still owed, now at newp
	queued      []string // server-side moves to queue
}

// renameFileTxn moves the record of the file at oldp to newp in t.
func (c *Cache) renameFileTxn(t *index.Tx, oldp, newp string, noReplace bool, fr *fileRename) error {
	*fr = fileRename{} // a transaction may be run again
	src, ok, err := t.Get(oldp)
	if err != nil || !ok {
		return errorOr(err, ErrNotExist)
	}
	if src.Dir {
		return errDirRename
	}
	if src.State == Remote && c.localOnly(newp) {
		fr.fetchNeeded = true // a local-only tree needs the bytes here
		return nil
	}
	if fr.dst, fr.dstOK, err = t.Get(newp); err != nil {
		return err
	}
	if fr.dstOK && noReplace {
		return ErrExist
	}
	if fr.dstOK && fr.dst.Dir {
		return ErrIsDir
	}
	now := time.Now().UnixNano()
	if err := touchParent(t, oldp, now); err != nil {
		return err
	}
	if err := touchParent(t, newp, now); err != nil {
		return err
	}
	if parentDir, err := t.IsDir(index.ParentOf(newp)); err != nil || !parentDir {
		return errorOr(err, ErrNotExist)
	}
	newTomb, err := t.GoneHere(newp)
	if err != nil {
		return err
	}
	if err := t.Unhide(newp); err != nil {
		return err
	}
	if src.Stored() && !c.localOnly(oldp) && !c.localOnly(newp) {
		// Its bytes are in the store: the object moves there (a
		// server-side copy, as a directory rename does), not the bytes.
		if fr.dstOK {
			if err := t.DelRead(newp, fr.dst); err != nil {
				return err
			}
		}
		fr.queued, err = c.moveRecordTxn(t, oldp, newp, now)
		return err
	}
	if err := t.Del(oldp); err != nil {
		return err
	}
	if err := c.forgetKey(t, oldp, src.InStore, &fr.oldTomb); err != nil {
		return err
	}
	moved := src
	moved.CTime = now
	moved.InStore = (fr.dstOK && fr.dst.InStore) || (!fr.dstOK && newTomb)
	fr.moveSrc = src.MoveFrom
	return c.putRenamedTxn(t, newp, moved)
}

// renamedLocked brings the open files, the caches of what the store holds
// and the upload queue in step with a committed file rename.
func (c *Cache) renamedLocked(oldp, newp string, fr *fileRename) {
	if fr.dstOK {
		c.data.Remove(fr.dst.Data)
		c.detachLocked(newp)
	}
	if of := c.open[oldp]; of != nil {
		delete(c.open, oldp)
		of.path = newp
		c.open[newp] = of
	}
	delete(c.verified, oldp)
	delete(c.verified, newp)
	c.negative.remove(newp)
	c.q.Supersede(oldp)
	c.q.Supersede(newp)
	if fr.oldTomb {
		c.q.Add(oldp)
	}
	if fr.moveSrc != "" {
		c.q.Add(fr.moveSrc)
	}
	c.queueAll(fr.queued)
	c.q.Add(newp)
}
