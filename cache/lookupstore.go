package cache

import (
	"context"
	"fmt"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/index"
	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// A name the index does not know: the store is asked, once per name
// whatever the number of callers, and its answer recorded (lookup.go
// answers from the index).

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
func (c *Cache) lookupRemote(ctx context.Context, p string) (Attr, error) {
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
func (c *Cache) askStore(p string) (Attr, error) {
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
func (c *Cache) lookupRemoteOnce(ctx context.Context, p string) (Attr, bool, error) {
	lctx, cancel := context.WithTimeout(ctx, c.opts.LookupTimeout)
	defer cancel()
	asked := time.Now()
	var gone map[string]bool
	err := c.ix.View(func(txn index.View) error {
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
		if err == nil && f.Dir {
			c.listAhead(p, below, f.Complete, asked)
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
func (c *Cache) learnAnswer(p string, f objstore.Found, meta map[string]string, at time.Time) (Attr, bool, error) {
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
func (c *Cache) lookupSubtree(p string) (a Attr, ok bool, err error) {
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
func (c *Cache) remoteDirExists(ctx context.Context, p string) (bool, error) {
	before, err := c.readOwedBelow(p)
	if err != nil {
		return false, err
	}
	return c.remoteDirExistsExcept(ctx, p, before)
}

// remoteDirExistsExcept is remoteDirExists with the deletes owed below p
// already read, before the LIST starts.
func (c *Cache) remoteDirExistsExcept(ctx context.Context, p string, before map[string]bool) (bool, error) {
	found := false
	var viewErr error
	err := c.store.List(ctx, p+"/", true, func(e objstore.Entry) bool {
		key := index.JoinPath(p, e.Name)
		if before[key] {
			return true
		}
		viewErr = c.ix.View(func(txn index.View) error {
			tomb, err := txn.GoneHere(key)
			found = !tomb
			return err
		})
		return !found && viewErr == nil
	})
	return found, errorOr(err, viewErr)
}

// readOwedBelow is index.OwedBelow in a read transaction of its own.
func (c *Cache) readOwedBelow(p string) (gone map[string]bool, err error) {
	err = c.ix.View(func(txn index.View) error {
		gone, err = txn.OwedBelow(p)
		return err
	})
	return gone, err
}

// learn records an entry found in the store by a question asked at asked
// (zero: no time to check), unless the index gained one meanwhile or an
// owed delete of the key landed since (settledSinceLocked), and returns
// its attributes.
func (c *Cache) learn(p string, r index.Record, asked time.Time) (Attr, error) {
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
