package cache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// A directory rename moves, in the index, every record below the
// directory to the new path at once, and owes the store a server-side move
// of each object there: the record at the new key says where its object
// still sits (record.MoveFrom), and the old key is marked as a move's
// source (moveSourceKey), so that it reads as gone and nothing is written
// there until the move is done. The upload queue then copies each object
// (CopyObject) and deletes the old key, in that order, so a stop at any
// point leaves every object at one key or both, never neither:
//
//	copy old→new   the record still names old; a retry copies again
//	clear MoveFrom the bytes are at new; old is deleted next
//	delete old     the source mark goes with the owed delete
//
// In the index, a tree moves in one transaction, or for a larger tree in
// batches under a rename intent (renameIntentKey) that Open finishes
// after a crash. Between batches the mount goes on serving; the kernel
// holds both parent directories for the rename, so it reaches the tree
// only through names it resolved before, which Resolve maps to wherever
// each record is meanwhile.

const (
	moveSourcePrefix   = 'M' // M<old key> -> path of the record moving it
	renameIntentPrefix = 'R' // R<old>\x00<new> -> "": a tree move under way
)

func moveSourceKey(p string) []byte { return append([]byte{moveSourcePrefix}, p...) }

func renameIntentKey(oldp, newp string) []byte {
	k := append([]byte{renameIntentPrefix}, oldp...)
	k = append(k, 0)
	return append(k, newp...)
}

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
	_ = c.view(func(txn *badger.Txn) error {
		_, here, _ = getRecord(txn, p)
		if !here {
			_, there, _ = getRecord(txn, q)
		}
		return nil
	})
	if !here && there {
		return q
	}
	return p
}

// renameBatch bounds the records moved in one index transaction (a var
// for the tests of batched moves).
var renameBatch = 1000

// moveOwner returns the path of the record whose object still sits at p,
// if a move from p is owed.
func moveOwner(txn *badger.Txn, p string) (string, bool, error) {
	item, err := txn.Get(moveSourceKey(p))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	v, err := item.ValueCopy(nil)
	return string(v), err == nil, err
}

// moveStillOwed reports whether a move out of src is still owed: its
// mark names a record that still says its object sits at src.
func moveStillOwed(txn *badger.Txn, src string) (bool, error) {
	owner, ok, err := moveOwner(txn, src)
	if err != nil || !ok {
		return false, err
	}
	r, ok, err := getRecord(txn, owner)
	if err != nil || !ok {
		return false, err
	}
	return r.MoveFrom == src, nil
}

// objectKeyOf is the key the object of the file at p sits at now.
func (c *Cache) objectKeyOf(p string) string {
	var r record
	_ = c.view(func(txn *badger.Txn) (err error) {
		r, _, err = getRecord(txn, p)
		return err
	})
	return r.objectKey(p)
}

// renameDir moves the directory oldp, and everything below it, to newp.
func (c *Cache) renameDir(ctx context.Context, oldp, newp string) error {
	if strings.HasPrefix(newp, oldp+"/") {
		return ErrInvalid // into itself
	}
	if c.localOnly(oldp) != c.localOnly(newp) {
		// One side keeps files out of the store: mv(1) copies instead.
		return ErrCrossDevice
	}
	var dst record
	var dstOK bool
	if err := c.view(func(txn *badger.Txn) (err error) {
		dst, dstOK, err = getRecord(txn, newp)
		return err
	}); err != nil {
		return err
	}
	if dstOK {
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
		err := c.learnTree(lctx, oldp)
		cancel()
		if err != nil {
			c.noteStoreError(err)
			return fmt.Errorf("%w: %w", ErrStore, err)
		}
	}
	return c.moveTree(oldp, newp, false)
}

// learnTree records every object the store holds below the directory p
// that the index lacks (with the directories they imply), so that a
// rename moves them too. It does not hold the index lock while listing.
func (c *Cache) learnTree(ctx context.Context, p string) error {
	var page []listedObject
	var pageErr error
	flush := func() bool {
		pageErr = c.learnObjects(p, page)
		page = page[:0]
		return pageErr == nil
	}
	err := c.store.List(ctx, p+"/", true, func(name string, size int64, mtime time.Time, isDir bool) bool {
		if isDir || name == "" || strings.HasSuffix(name, "/") {
			return true // folder markers: their directories come with the objects
		}
		page = append(page, listedObject{name, size, mtime})
		return len(page) < renameBatch || flush()
	})
	if err == nil && len(page) > 0 {
		flush()
	}
	return errors.Join(err, pageErr)
}

// listedObject is an object a recursive LIST met, named below its prefix.
type listedObject struct {
	name  string
	size  int64
	mtime time.Time
}

// learnObjects records the objects at p/<name> the index lacks.
func (c *Cache) learnObjects(p string, objs []listedObject) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.update(func(t *tx) error {
		for _, o := range objs {
			full := joinPath(p, o.name)
			if c.checkPath(full) != nil {
				continue // a name no local tool could use stays behind
			}
			if err := c.learnPathTxn(t, full, o.size, o.mtime); err != nil {
				return err
			}
		}
		return nil
	})
}

// learnPathTxn records the object at p and its directories, where the
// index knows nothing of them and nothing was removed here.
func (c *Cache) learnPathTxn(t *tx, p string, size int64, mtime time.Time) error {
	if _, ok, err := t.get(p); err != nil || ok {
		return err
	}
	if gone, err := goneHere(t.txn, p); err != nil || gone {
		return err
	}
	parent := parentOf(p)
	if ok, err := c.isDirTxn(t.txn, parent); err != nil {
		return err
	} else if !ok {
		if _, exists, err := t.get(parent); err != nil || exists {
			return err // a file where a directory would be: leave it
		}
		if err := c.learnDirTxn(t, parent); err != nil {
			return err
		}
	}
	ino, err := c.ix.nextIno()
	if err != nil {
		return err
	}
	return t.put(p, record{State: Remote, Ino: ino, Size: size, InStore: true, MetaUnknown: true,
		MTime: mtime.UnixNano(), StoreMTime: mtime.UnixNano()})
}

// learnDirTxn records the directory p and those above it that are missing.
func (c *Cache) learnDirTxn(t *tx, p string) error {
	if p == "" {
		return nil
	}
	if _, ok, err := t.get(p); err != nil || ok {
		return err
	}
	if err := c.learnDirTxn(t, parentOf(p)); err != nil {
		return err
	}
	ino, err := c.ix.nextIno()
	if err != nil {
		return err
	}
	return t.put(p, record{Dir: true, Ino: ino, MTime: time.Now().UnixNano()})
}

// moveTree moves the records at and below oldp to newp in the index, in
// batches under a rename intent, each under the index lock. resuming is
// set when Open finishes a move a crash interrupted.
func (c *Cache) moveTree(oldp, newp string, resuming bool) error {
	c.moving.add(oldp, newp)
	defer c.moving.remove(oldp)
	// The tree is read from one snapshot, without the lock: the kernel
	// adds nothing below a directory it is renaming.
	var paths []string
	if err := c.view(func(txn *badger.Txn) error {
		if _, ok, err := getRecord(txn, oldp); err != nil || ok {
			if err == nil {
				paths = append(paths, oldp)
			}
			return err
		}
		return nil
	}); err != nil {
		return err
	}
	if len(paths) == 0 && !resuming {
		return ErrNotExist
	}
	if err := c.view(func(txn *badger.Txn) error { return collectBelow(txn, oldp, &paths) }); err != nil {
		return err
	}
	locked := false
	defer func() {
		if locked {
			c.mu.Unlock()
		}
	}()
	intent := renameIntentKey(oldp, newp)
	var queue []string
	now := time.Now().UnixNano()
	for start := 0; start == 0 || start < len(paths); start += renameBatch {
		if !locked {
			c.mu.Lock()
			locked = true
		}
		batch := paths[start:min(start+renameBatch, len(paths))]
		last := start+renameBatch >= len(paths)
		err := c.update(func(t *tx) error {
			if start == 0 {
				if !resuming {
					if _, ok, err := t.get(newp); err != nil || ok {
						return errorOr(err, ErrExist)
					}
					if ok, err := c.isDirTxn(t.txn, parentOf(newp)); err != nil || !ok {
						return errorOr(err, ErrNotExist)
					}
				}
				if !last {
					if err := t.txn.Set(intent, nil); err != nil {
						return err
					}
				}
				if err := t.touchParent(oldp, now); err != nil {
					return err
				}
				if err := t.touchParent(newp, now); err != nil {
					return err
				}
			}
			for _, from := range batch {
				to := newp + strings.TrimPrefix(from, oldp)
				q, err := c.moveRecordTxn(t, from, to, now)
				if err != nil {
					return err
				}
				queue = append(queue, q...)
			}
			if last && start > 0 || last && resuming {
				return t.txn.Delete(intent)
			}
			return nil
		})
		if err != nil {
			if start > 0 {
				// Half moved: the intent finishes it at the next Open.
				c.log.Error("directory rename stopped half way; the next start finishes it", "from", oldp, "to", newp, "err", err)
			}
			return err
		}
		for _, from := range batch {
			to := newp + strings.TrimPrefix(from, oldp)
			if of := c.open[from]; of != nil {
				delete(c.open, from)
				of.path = to
				c.open[to] = of
			}
			delete(c.verified, from)
			c.negative.remove(to)
			c.q.supersede(from)
		}
		c.removeFromSubtreesLocked(oldp)
		c.removeFromSubtreesLocked(newp)
		c.negative.remove(newp)
		c.queueAll(queue)
		queue = queue[:0]
		// Let the rest of the mount in between batches.
		c.mu.Unlock()
		locked = false
	}
	return nil
}

// collectBelow appends the paths of every record below the directory p.
func collectBelow(txn *badger.Txn, p string, out *[]string) error {
	var dirs []string
	err := forChildren(txn, p, func(name string, r record) error {
		child := joinPath(p, name)
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
func (c *Cache) moveRecordTxn(t *tx, from, to string, now int64) (queue []string, err error) {
	r, ok, err := t.get(from)
	if err != nil || !ok {
		return nil, err // moved before a crash
	}
	if err := t.delRead(from, r); err != nil {
		return nil, err
	}
	moved := r
	moved.CTime = now
	switch {
	case r.Dir:
		if !r.MadeHere && !c.localOnly(from) {
			// A folder object may mark it in the store (another tool's
			// mkdir): it goes once the moves below it are done.
			if err := setPending(t.txn, folderKey(from)); err != nil {
				return nil, err
			}
			queue = append(queue, folderKey(from))
		}
	case r.State == Special:
		// Index only.
	case r.State == Clean || r.State == Remote:
		// The bytes of this version are in the store: move them there.
		src := r.objectKey(from)
		moved.MoveFrom = src
		if err := t.txn.Set(moveSourceKey(src), []byte(to)); err != nil {
			return nil, err
		}
		if err := setPending(t.txn, src); err != nil {
			return nil, err
		}
		if src != from {
			// Renamed again before its move was done: a copy to from
			// may have landed, and is not wanted.
			if err := setPending(t.txn, from); err != nil {
				return nil, err
			}
			queue = append(queue, from)
		}
		if err := setPending(t.txn, to); err != nil {
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
			if err := t.txn.Set(moveSourceKey(r.MoveFrom), []byte(to)); err != nil {
				return nil, err
			}
			if err := setPending(t.txn, from); err != nil {
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
			if err := clearPending(t.txn, to); err != nil {
				return nil, err
			}
		} else {
			if err := setPending(t.txn, to); err != nil {
				return nil, err
			}
			queue = append(queue, to)
		}
	}
	if err := t.put(to, moved); err != nil {
		return nil, err
	}
	return queue, nil
}

// finishRenames completes the directory renames a crash interrupted.
func (c *Cache) finishRenames() error {
	type move struct{ from, to string }
	var moves []move
	err := c.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{renameIntentPrefix}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			from, to, ok := strings.Cut(string(it.Item().Key()[1:]), "\x00")
			if ok {
				moves = append(moves, move{from, to})
			}
		}
		return nil
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

// moveObject carries out the owed move of p's object from r.MoveFrom (see
// the top of this file): copy, then forget the old key, then delete it.
func (c *Cache) moveObject(ctx context.Context, p string, r record) (again bool, err error) {
	src := r.MoveFrom
	if r.Size >= maxCopySize {
		return false, fmt.Errorf("move %q to %q: objects over 5 GiB cannot be copied in the store; copy the file through the mount instead", src, p)
	}
	if r.MetaUnknown {
		// The copy replaces the metadata: read what the object carries
		// (another tool's owner and mode) so that it is carried over.
		_, _, meta, err := c.store.Head(ctx, src)
		if err != nil && !isNotFound(err) {
			return false, err
		}
		if err == nil {
			applyMeta(&r, meta)
		}
	}
	err = c.store.Copy(ctx, src, p, metaOf(r))
	if isNotFound(err) {
		// Copied before a stop, or removed by another host.
		_, _, _, herr := c.store.Head(ctx, p)
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
	err = c.update(func(t *tx) error {
		cur, ok, err := t.get(p)
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
		if err := t.put(p, cur); err != nil {
			return err
		}
		if (cur.State == Clean || cur.State == Remote) && !cur.MetaOwed {
			return clearPending(t.txn, p)
		}
		again = true
		return nil
	})
	c.mu.Unlock()
	if err != nil {
		return false, err
	}
	// The old key's owed delete runs now that no record reads from it.
	c.q.add(src)
	return again, nil
}
