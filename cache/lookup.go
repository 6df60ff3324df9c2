package cache

import (
	"context"
	"fmt"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/index"
	"github.com/s3mediafs/s3mediafs/cache/objstore"
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
func (c *Cache) Stat(ctx context.Context, p string) (Attr, error) {
	if p == "" {
		return c.RootAttr(), nil
	}
	if err := c.checkPath(p); err != nil {
		return Attr{}, err
	}
	var r index.Record
	var ok, tomb, parentOK bool
	err := c.view(func(txn index.View) error {
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
			c.remote.promoteLocal(p)
		}
		if !r.Dir && r.Stored() && c.remote.dueForRevalidation(p) {
			if c.opts.RevalidateWaits {
				return c.remote.revalidate(ctx, p, r)
			}
			c.remote.revalidateLater(p, r)
		}
		if r.MetaUnknown && !c.opts.SkipObjectMeta {
			return c.remote.learnMeta(ctx, p, r), nil
		}
		return c.remote.withOpenSize(p, attrOf(r)), nil
	}
	if tomb || !parentOK {
		return Attr{}, ErrNotExist
	}
	a, err := c.remote.lookupRemote(ctx, p)
	if err != nil || a.Dir {
		return a, err
	}
	// The LIST that found the object carries no metadata.
	return c.Stat(ctx, p)
}

// withOpenSize reports the live size of a file open for writing.
func (c *remote) withOpenSize(p string, a Attr) Attr {
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

// lookupRemote asks the store about a name the index does not know and
// records what it finds. A failed attempt is retried (retry.go); when the store
// still cannot answer (or is known to be down), the name is absent, so
// that creating new files is never blocked by the store.
//
// The store is asked on a deadline of its own, by one request shared by
// every caller of p. A caller interrupted meanwhile (a signal reached the
// process waiting in the kernel, which sends FUSE_INTERRUPT) gets its
// context's error, EINTR, never "absent"; its retry joins the request
// still in flight, so a process that takes signals often still gets its
// answer.
func (c *remote) lookupRemote(ctx context.Context, p string) (Attr, error) {
	c.mu.Lock()
	until, neg := c.negative.get(p)
	listedAt, listed := c.listed.get(index.ParentOf(p))
	listed = listed && time.Since(listedAt) < c.opts.NegativeTTL
	madeAt, made := c.made.get(index.ParentOf(p))
	if made && time.Since(madeAt) < c.opts.MadeDirTrust {
		// Made here, recently: taken as fully known (MadeDirTrust).
		listed, listedAt = true, time.Now()
	}
	if listed {
		// Absent from a fully known directory, so nothing is below it
		// either: a directory made here is fully known from birth.
		c.listed.set(p, listedAt)
		c.mu.Unlock()
		return Attr{}, ErrNotExist
	}
	c.mu.Unlock()
	if neg && time.Now().Before(until) || c.localOnly(p) {
		return Attr{}, ErrNotExist
	}
	if a, ok, err := c.lookupSubtree(p); ok {
		return a, err
	}
	ch := c.lookups.DoChan(p, func() (any, error) { return c.askStore(p) })
	select {
	case res := <-ch:
		a, _ := res.Val.(Attr)
		return a, res.Err
	case <-ctx.Done():
		return Attr{}, fmt.Errorf("lookup %q: %w", p, ctx.Err())
	}
}

// askStore is lookupRemote's question to the store, retried as it says.
func (c *remote) askStore(p string) (Attr, error) {
	var err error
	for t := newTries(); t.next(context.Background()); {
		if c.storeIsDown() {
			return Attr{}, ErrNotExist
		}
		var a Attr
		var found bool
		a, found, err = c.lookupRemoteOnce(context.Background(), p)
		if err == nil {
			c.noteStoreOK()
			if found {
				return a, nil
			}
			c.mu.Lock()
			c.negative.set(p, time.Now().Add(c.opts.NegativeTTL))
			c.mu.Unlock()
			return Attr{}, ErrNotExist
		}
		c.noteStoreError(err)
	}
	c.log.Warn("store lookup failed; treating the name as absent", "path", p, "err", err)
	return Attr{}, ErrNotExist
}

// lookupRemoteOnce asks the store what p is, on the lookup deadline: one
// request (Store.Lookup) as a rule. Where deletes are owed or keys hidden
// below p, the keys the store still lists there must not make p a
// directory, so it asks with a HEAD and a LIST that reads past them
// instead.
func (c *remote) lookupRemoteOnce(ctx context.Context, p string) (Attr, bool, error) {
	lctx, cancel := context.WithTimeout(ctx, c.opts.LookupTimeout)
	defer cancel()
	asked := time.Now()
	var gone map[string]bool
	err := c.view(func(txn index.View) error {
		if !txn.HasGoneBelow(p) {
			return nil
		}
		var err error
		gone, err = txn.OwedBelow(p)
		return err
	})
	if err != nil {
		return Attr{}, false, err
	}
	var f objstore.Found
	var meta map[string]string
	if gone == nil {
		below := newSubtree(asked)
		f, err = c.store.Lookup(lctx, p, below.add)
		if err == nil && f.Dir && f.Complete {
			c.mu.Lock()
			c.keepSubtreeLocked(p, below)
			c.mu.Unlock()
		}
	} else {
		var o objstore.Object
		o, err = c.store.Head(lctx, p)
		f = objstore.Found{File: err == nil, Size: o.Size, MTime: o.MTime}
		meta = o.Meta
		if isNotFound(err) {
			f.Dir, err = c.remoteDirExistsExcept(lctx, p, gone)
		}
	}
	if err != nil {
		return Attr{}, false, err
	}
	return c.learnAnswer(p, f, meta, asked)
}

// learnAnswer records what the store said about p, as of the time given:
// a file of that size, time and metadata (nil: not read yet), a
// directory, or neither. It reports whether p exists.
func (c *remote) learnAnswer(p string, f objstore.Found, meta map[string]string, at time.Time) (Attr, bool, error) {
	var r index.Record
	switch {
	case f.File:
		r = index.Record{State: Remote, Size: f.Size, MTime: f.MTime.UnixNano(), StoreMTime: f.MTime.UnixNano(), InStore: true, MetaUnknown: true}
		if meta != nil {
			applyMeta(&r, meta)
		}
	case f.Dir:
		c.mu.Lock()
		stale := c.settledSinceLocked(p, at)
		c.mu.Unlock()
		if stale {
			// Deletes below p landed since the store was asked: ask
			// again whether anything is left there.
			ctx, cancel := context.WithTimeout(context.Background(), c.opts.LookupTimeout)
			exists, err := c.remoteDirExists(ctx, p)
			cancel()
			if err != nil {
				return Attr{}, false, err
			}
			if !exists {
				return Attr{}, false, nil
			}
		}
		r = index.Record{Dir: true, MTime: time.Now().UnixNano()}
	default:
		// Nothing below p either: if p becomes a directory here, its
		// names are all known.
		c.mu.Lock()
		c.listed.set(p, at)
		c.mu.Unlock()
		return Attr{}, false, nil
	}
	a, err := c.learn(p, r, at)
	return a, err == nil, errorOr(ignoreNotExist(err), nil)
}

// lookupSubtree answers a lookup of p from what an earlier lookup learned
// about the tree below one of its ancestors; ok is false when none did.
func (c *remote) lookupSubtree(p string) (a Attr, ok bool, err error) {
	c.mu.Lock()
	f, dir, covered, at := c.fromSubtreeLocked(p)
	c.mu.Unlock()
	if !covered {
		return Attr{}, false, nil
	}
	answer := objstore.Found{Dir: dir}
	if f != nil {
		answer.File, answer.Size, answer.MTime = true, f.size, f.mtime
	}
	a, found, err := c.learnAnswer(p, answer, nil, at)
	if err == nil && !found {
		c.mu.Lock()
		c.negative.set(p, at.Add(c.opts.NegativeTTL))
		c.mu.Unlock()
		err = ErrNotExist
	}
	return a, true, err
}

// ignoreNotExist drops ErrNotExist: learn says "not exist" when the name
// was removed here meanwhile, which is an answer, not a failure.
func ignoreNotExist(err error) error {
	if isNotFound(err) {
		return nil
	}
	return err
}

// remoteDirExists reports whether the store has any object below p/ that
// is not a pending local delete. It reads past the first key only while
// the keys it meets are being deleted, so a plain lookup costs one LIST.
//
// Deletes owed before the LIST starts are remembered first: one of them
// may complete while the LIST is answered, and its key must still not
// count.
func (c *remote) remoteDirExists(ctx context.Context, p string) (bool, error) {
	before, err := c.readOwedBelow(p)
	if err != nil {
		return false, err
	}
	return c.remoteDirExistsExcept(ctx, p, before)
}

// remoteDirExistsExcept is remoteDirExists with the deletes owed below p
// already read, before the LIST starts.
func (c *remote) remoteDirExistsExcept(ctx context.Context, p string, before map[string]bool) (bool, error) {
	found := false
	var viewErr error
	err := c.store.List(ctx, p+"/", true, func(e objstore.Entry) bool {
		key := index.JoinPath(p, e.Name)
		if before[key] {
			return true
		}
		viewErr = c.view(func(txn index.View) error {
			tomb, err := txn.GoneHere(key)
			found = !tomb
			return err
		})
		return !found && viewErr == nil
	})
	return found, errorOr(err, viewErr)
}

// readOwedBelow is index.OwedBelow in a read transaction of its own.
func (c *remote) readOwedBelow(p string) (gone map[string]bool, err error) {
	err = c.view(func(txn index.View) error {
		gone, err = txn.OwedBelow(p)
		return err
	})
	return gone, err
}

// learn records an entry found in the store by a question asked at asked
// (zero: no time to check), unless the index gained one meanwhile or an
// owed delete of the key landed since (settledSinceLocked), and returns
// its attributes.
func (c *remote) learn(p string, r index.Record, asked time.Time) (Attr, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !r.Dir && !asked.IsZero() && c.settledSinceLocked(p, asked) {
		return Attr{}, ErrNotExist
	}
	var out Attr
	err := c.updateLocked(func(t *index.Tx) error {
		cur, ok, err := t.Get(p)
		if err != nil {
			return err
		}
		if ok {
			out = attrOf(cur)
			return nil
		}
		if gone, err := t.GoneHere(p); err != nil || gone {
			return errorOr(err, ErrNotExist)
		}
		if parentDir, err := t.IsDir(index.ParentOf(p)); err != nil || !parentDir {
			return errorOr(err, ErrNotExist)
		}
		if r.Ino, err = c.ix.NextIno(); err != nil {
			return err
		}
		out = attrOf(r)
		return t.Put(p, r)
	})
	if err != nil {
		return Attr{}, err
	}
	if !r.Dir {
		c.verified[p] = time.Now()
	}
	return out, nil
}

// promoteLocal queues the upload of a local-only file whose tree now goes
// to the store (store_local or store_remote was switched on).
func (c *remote) promoteLocal(p string) {
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
