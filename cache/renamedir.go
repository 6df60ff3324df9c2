package cache

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/index"
)

// A directory rename moves, in the index, every record below the
// directory to the new path at once, and owes the store a server-side move
// of each object there: the record at the new key says where its object
// still sits (record.MoveFrom), and the old key is marked as a move's
// source (index.MoveSourceKey), so that it reads as gone and nothing is written
// there until the move is done. The upload queue then copies each object
// (CopyObject) and deletes the old key, in that order, so a stop at any
// point leaves every object at one key or both, never neither:
//
//	copy old→new   the record still names old; a retry copies again
//	clear MoveFrom the bytes are at new; old is deleted next
//	delete old     the source mark goes with the owed delete
//
// In the index, a tree moves in one transaction, or for a larger tree in
// batches under a rename intent (index.RenameIntentKey) that Open finishes
// after a crash. Between batches the mount goes on serving; the kernel
// holds both parent directories for the rename, so it reaches the tree
// only through names it resolved before, which Resolve maps to wherever
// each record is meanwhile.

// movingTrees are the directory renames under way: old path to new.
type movingTrees struct {
	n  atomic.Int32 // len(m), read without the lock
	mu sync.RWMutex
	m  map[string]string
}

func (m *movingTrees) add(oldp, newp string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = map[string]string{}
	}
	m.m[oldp] = newp
	m.n.Store(int32(len(m.m)))
}

func (m *movingTrees) remove(oldp string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.m, oldp)
	m.n.Store(int32(len(m.m)))
}

// Resolve maps a path the kernel resolved before a directory rename that
// is still moving its records to the path of the record now. Outside such
// a move it returns p at once.
func (c *Cache) Resolve(p string) string {
	if c.moving.n.Load() == 0 {
		return p
	}
	c.moving.mu.RLock()
	var q string
	for oldp, newp := range c.moving.m {
		if p == oldp || strings.HasPrefix(p, oldp+"/") {
			q = newp + p[len(oldp):]
			break
		}
	}
	c.moving.mu.RUnlock()
	if q == "" {
		return p
	}
	var here, there bool
	err := c.ix.View(func(txn index.View) (err error) {
		if _, here, err = txn.Get(p); err != nil || here {
			return err
		}
		_, there, err = txn.Get(q)
		return err
	})
	if err == nil && !here && there {
		return q
	}
	return p
}

// renameBatch bounds the records moved in one index transaction (a var
// for the tests of batched moves).
var renameBatch = 0 // 0: the index's own limit (moveBatchSize)

// moveBatchSize is how many records one transaction of a directory
// rename moves: each writes about eight keys (the records, marks of owed
// work, the LRU's).
func (c *Cache) moveBatchSize() int {
	if renameBatch > 0 {
		return renameBatch
	}
	return c.ix.BatchLimit(8)
}

// renameDir moves the directory oldp, and everything below it, to newp.
func (c *Cache) renameDir(ctx context.Context, oldp, newp string, noReplace bool) error {
	if strings.HasPrefix(newp, oldp+"/") {
		return ErrInvalid // into itself
	}
	if c.localOnly(oldp) != c.localOnly(newp) {
		// One side keeps files out of the store: mv(1) copies instead.
		return ErrCrossDevice
	}
	var dst index.Record
	var dstOK bool
	if err := c.ix.View(func(txn index.View) (err error) {
		dst, dstOK, err = txn.Get(newp)
		return err
	}); err != nil {
		return err
	}
	if dstOK {
		if noReplace {
			return ErrExist
		}
		if !dst.Dir {
			return ErrNotDir
		}
		// rename(2) replaces an empty directory.
		if err := c.Rmdir(ctx, newp); err != nil {
			return err
		}
	}
	if !c.localOnly(oldp) {
		// Objects below oldp that the index has not met move too.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.StoreTimeout*10)
		err := c.learnTree(lctx, oldp, 0)
		cancel()
		if err != nil {
			c.noteStoreError(err)
			return fmt.Errorf("%w: %w", ErrStore, err)
		}
	}
	return c.moveTree(oldp, newp, false)
}

// treeMove is one directory rename's move of index records.
type treeMove struct {
	oldp, newp string
	resuming   bool  // finishing, at Open, a move a stop interrupted
	now        int64 // the rename's time: ctime of what moves
}

// moveTree moves the records at and below oldp to newp in the index, in
// batches under a rename intent, each under the index lock. resuming is
// set when Open finishes a move a crash interrupted.
func (c *Cache) moveTree(oldp, newp string, resuming bool) error {
	c.moving.add(oldp, newp)
	defer c.moving.remove(oldp)
	m := treeMove{oldp: oldp, newp: newp, resuming: resuming, now: time.Now().UnixNano()}
	// The tree is read from one snapshot, without the lock: the kernel
	// adds nothing below a directory it is renaming.
	var paths []string
	if err := c.ix.View(func(txn index.View) error {
		_, ok, err := txn.Get(oldp)
		if err != nil || (!ok && !resuming) {
			return err
		}
		if ok {
			paths = append(paths, oldp)
		}
		// A stop may have moved oldp's record before those below it.
		return collectBelow(txn, oldp, &paths)
	}); err != nil {
		return err
	}
	if len(paths) == 0 && !resuming {
		return ErrNotExist
	}
	n := c.moveBatchSize()
	for start := 0; start == 0 || start < len(paths); start += n {
		batch := paths[start:min(start+n, len(paths))]
		first, last := start == 0, start+n >= len(paths)
		// The lock is let go between batches, for the rest of the mount.
		if err := c.moveBatch(m, batch, first, last); err != nil {
			if !first {
				// Half moved: the intent finishes it at the next Open.
				c.log.Error("directory rename stopped half way; the next start finishes it", "from", oldp, "to", newp, "err", err)
			}
			return err
		}
	}
	return nil
}

// moveBatch moves the records at paths in one transaction. The first
// batch checks the target and writes the intent when more batches follow;
// the last one removes the intent.
func (c *Cache) moveBatch(m treeMove, paths []string, first, last bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var queue []string
	err := c.updateLocked(func(t *index.Tx) error {
		if first {
			if err := c.startMoveTxn(t, m, !last); err != nil {
				return err
			}
		}
		for _, from := range paths {
			q, err := c.moveRecordTxn(t, from, m.newp+strings.TrimPrefix(from, m.oldp), m.now)
			if err != nil {
				return err
			}
			queue = append(queue, q...)
		}
		if last && (!first || m.resuming) {
			return t.EndRename(m.oldp, m.newp)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, from := range paths {
		to := m.newp + strings.TrimPrefix(from, m.oldp)
		if of := c.open[from]; of != nil {
			delete(c.open, from)
			of.path = to
			c.open[to] = of
		}
		delete(c.verified, from)
		c.negative.remove(to)
		c.q.Supersede(from)
	}
	c.removeFromSubtreesLocked(m.oldp)
	c.removeFromSubtreesLocked(m.newp)
	c.negative.remove(m.newp)
	c.queueAll(queue)
	return nil
}

// startMoveTxn checks that the rename's target is free (unless resuming),
// writes the intent when the move takes more than one batch, and moves
// both parents' times.
func (c *Cache) startMoveTxn(t *index.Tx, m treeMove, batched bool) error {
	if !m.resuming {
		if _, ok, err := t.Get(m.newp); err != nil || ok {
			return errorOr(err, ErrExist)
		}
		if ok, err := t.IsDir(index.ParentOf(m.newp)); err != nil || !ok {
			return errorOr(err, ErrNotExist)
		}
	}
	if batched {
		if err := t.StartRename(m.oldp, m.newp); err != nil {
			return err
		}
	}
	if err := touchParent(t, m.oldp, m.now); err != nil {
		return err
	}
	return touchParent(t, m.newp, m.now)
}

// collectBelow appends the paths of every record below the directory p.
func collectBelow(txn index.View, p string, out *[]string) error {
	var dirs []string
	err := txn.ForChildren(p, func(name string, r index.Record) error {
		child := index.JoinPath(p, name)
		*out = append(*out, child)
		if r.Dir {
			dirs = append(dirs, child)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, d := range dirs {
		if err := collectBelow(txn, d, out); err != nil {
			return err
		}
	}
	return nil
}

// moveRecordTxn moves one record from to to, and owes the store what that
// takes; it returns the keys to queue once the transaction commits.
func (c *Cache) moveRecordTxn(t *index.Tx, from, to string, now int64) (queue []string, err error) {
	r, ok, err := t.Get(from)
	if err != nil || !ok {
		return nil, err // moved before a crash
	}
	if err := t.DelRead(from, r); err != nil {
		return nil, err
	}
	moved := r
	moved.CTime = now
	switch {
	case r.Dir:
		if !c.localOnly(from) {
			// A folder may mark it in the store (another tool's mkdir's
			// object, or one a store keeps after the objects below it
			// left, as SeaweedFS does): it goes once the moves below it
			// are done, as an rmdir's does.
			if err := t.SetPending(folderKey(from)); err != nil {
				return nil, err
			}
			queue = append(queue, folderKey(from))
		}
	case r.State == Special:
		// Index only.
	case r.Stored():
		// The bytes of this version are in the store: move them there.
		src := r.ObjectKey(from)
		moved.MoveFrom = src
		if err := t.MarkMoveSource(src, to); err != nil {
			return nil, err
		}
		if err := t.SetPending(src); err != nil {
			return nil, err
		}
		if src != from {
			// Renamed again before its move was done: a copy to from
			// may have landed, and is not wanted.
			if err := t.SetPending(from); err != nil {
				return nil, err
			}
			queue = append(queue, from)
		}
		if err := t.SetPending(to); err != nil {
			return nil, err
		}
		queue = append(queue, to)
	default:
		// Dirty, uploading or local-only: the newest bytes are here, and
		// go up at the new key; an object at the old key is deleted.
		tomb := false
		if r.MoveFrom == "" {
			if err := c.forgetKey(t, from, r.InStore, &tomb); err != nil {
				return nil, err
			}
		} else {
			if err := t.MarkMoveSource(r.MoveFrom, to); err != nil {
				return nil, err
			}
			if err := t.SetPending(from); err != nil {
				return nil, err
			}
			tomb = true
		}
		if tomb {
			queue = append(queue, from)
		}
		newTomb, err := claimKey(t, to)
		if err != nil {
			return nil, err
		}
		moved.Gen++
		moved.State = c.versionState(to)
		moved.InStore = newTomb
		if moved.State == Local && !moved.InStore && moved.MoveFrom == "" {
			if err := t.ClearPending(to); err != nil {
				return nil, err
			}
		} else {
			if err := t.SetPending(to); err != nil {
				return nil, err
			}
			queue = append(queue, to)
		}
	}
	if err := t.Put(to, moved); err != nil {
		return nil, err
	}
	return queue, nil
}

// finishRenames completes the directory renames a crash interrupted.
func (c *Cache) finishRenames() error {
	type move struct{ from, to string }
	var moves []move
	err := c.ix.View(func(txn index.View) error {
		underway, err := txn.RenamesUnderway()
		for _, m := range underway {
			moves = append(moves, move{m[0], m[1]})
		}
		return err
	})
	if err != nil {
		return err
	}
	for _, m := range moves {
		c.log.Warn("finishing a directory rename a stop interrupted", "from", m.from, "to", m.to)
		if err := c.moveTree(m.from, m.to, true); err != nil {
			return fmt.Errorf("finish renaming %q to %q: %w", m.from, m.to, err)
		}
	}
	return nil
}
