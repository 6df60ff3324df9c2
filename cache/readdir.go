package cache

import (
	"context"
	"errors"
	"hash/maphash"
	"slices"
	"sort"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/index"
	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// DirEntry is one name in a directory listing.
type DirEntry struct {
	Name string
	Dir  bool
	Kind uint32 // as Attr.Kind
	Ino  uint64
}

// listPage is how many listed names one index transaction records: far
// below Badger's transaction limit (about 25,000 small records).
const listPage = 1000

// Readdir lists dir, merging the index with the store's listing. Names the
// store has and the index lacks are recorded; clean copies the store no
// longer has (deleted by another host) are forgotten. When the store cannot
// be reached, the index's view is returned.
//
// Any directory lists, whatever its size: the listing is recorded a page
// at a time, and what it holds in memory beyond the entries returned is
// eight bytes a name.
//
// The LIST runs on a deadline of its own and is shared by concurrent
// callers, as lookups are (see lookupRemote): a caller interrupted by a
// signal gets EINTR, never the index's part of the directory as all of it.
func (c *Cache) Readdir(ctx context.Context, dir string) ([]DirEntry, error) {
	if err := c.checkPath(dir); err != nil {
		return nil, err
	}
	ch := c.listings.DoChan(dir, func() (any, error) { return c.listDir(dir) })
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.([]DirEntry), nil
	case <-ctx.Done():
		return nil, wrapPath("readdir", dir, ctx.Err())
	}
}

// listing is one LIST of a directory in progress.
type listing struct {
	dir   string
	start time.Time
	// owedBefore holds the deletes owed on the directory's names before
	// the LIST started: one may complete while the LIST is answered, and
	// its name must not come back.
	owedBefore map[string]bool
	seed       maphash.Seed
	seen       []uint64 // hashes of the names the store listed
	warned     bool     // about a name the mount cannot show
}

func (l *listing) hash(name string) uint64 { return maphash.String(l.seed, name) }

// listedName is one name in the store's listing of a directory.
type listedName struct {
	name  string
	size  int64
	mtime time.Time
	dir   bool
}

// listDir is Readdir's shared work: LIST dir in the store, record what it
// shows a page at a time, forget what it no longer has, and return the
// directory's entries.
func (c *Cache) listDir(dir string) ([]DirEntry, error) {
	l := &listing{dir: dir, seed: maphash.MakeSeed()}
	if err := c.ix.View(func(txn index.View) error {
		if ok, err := txn.IsDir(dir); err != nil || !ok {
			return errorOr(err, ErrNotExist)
		}
		var err error
		l.owedBefore, err = txn.OwedChildren(dir)
		return err
	}); err != nil {
		return nil, wrapPath("readdir", dir, err)
	}
	if dir != "" && c.localOnly(dir) {
		return c.indexEntries(dir)
	}
	c.mu.Lock()
	c.watches[dir] = map[string]struct{}{}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.watches, dir)
		c.mu.Unlock()
	}()
	l.start = time.Now()
	// A listing of any size ends when the store stops answering: the
	// deadline bounds each page, not the whole directory.
	lctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stalled := time.AfterFunc(c.opts.StoreTimeout, cancel)
	defer stalled.Stop()
	prefix := ""
	if dir != "" {
		prefix = dir + "/"
	}
	page := make([]listedName, 0, listPage)
	var recordErr error
	listErr := c.store.List(lctx, prefix, false, func(e objstore.Entry) bool {
		page = append(page, listedName{e.Name, e.Size, e.MTime, e.Dir})
		if len(page) < listPage {
			return true
		}
		recordErr = c.recordListed(lctx, l, page)
		page = page[:0]
		stalled.Reset(c.opts.StoreTimeout)
		return recordErr == nil
	})
	if listErr == nil && recordErr == nil {
		recordErr = c.recordListed(lctx, l, page)
	}
	if errors.Is(recordErr, index.ErrFull) {
		// Names the index cannot record cannot be shown (each needs an
		// inode of its own): those it knows are, as in an outage.
		c.log.Warn("the cache filesystem is full: the listing shows the names the index knows", "dir", dir)
		return c.indexEntries(dir)
	}
	if recordErr != nil {
		return nil, wrapPath("readdir", dir, recordErr)
	}
	if listErr != nil {
		c.noteStoreError(listErr)
		c.log.Warn("store listing failed; showing local entries only", "dir", dir, "err", listErr)
		return c.indexEntries(dir)
	}
	slices.Sort(l.seen)
	if err := c.forgetUnlisted(l); err != nil && !errors.Is(err, index.ErrFull) {
		return nil, wrapPath("readdir", dir, err)
	}
	c.mu.Lock()
	c.listed.set(dir, l.start) // every name there is in the index now
	c.readdirs.set(dir, l.start)
	c.mu.Unlock()
	return c.indexEntries(dir)
}

// recordListed records one page of the store's listing of l.dir: names
// the index lacks are learned, names it has are marked verified.
func (c *Cache) recordListed(ctx context.Context, l *listing, page []listedName) error {
	for _, e := range page {
		l.seen = append(l.seen, l.hash(e.name))
	}
	// A directory whose every object is being deleted here (an rmtree
	// whose deletes are still queued) is not shown again; finding out
	// asks the store, so it is done before the index is locked.
	page = slices.DeleteFunc(page, func(e listedName) bool {
		return e.dir && c.deletedHere(ctx, index.JoinPath(l.dir, e.name), l.start)
	})
	// Names no local tool could use (over 255 bytes, not UTF-8, "." or
	// "..") are left out, with one warning per listing.
	page = slices.DeleteFunc(page, func(e listedName) bool {
		err := c.checkPath(index.JoinPath(l.dir, e.name))
		if err != nil && !l.warned {
			l.warned = true
			c.log.Warn("the store holds names the mount cannot show; they are left out", "dir", l.dir, "example", e.name, "err", err)
		}
		return err != nil
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.updateLocked(func(t *index.Tx) error {
		for _, e := range page {
			p := index.JoinPath(l.dir, e.name)
			r, ok, err := t.Get(p)
			if err != nil {
				return err
			}
			if ok {
				if !e.dir && sameAsListed(r, e) {
					// As good as a HEAD: the lookup of each entry that
					// follows a listing (ls -l) then asks the store
					// nothing (see dueForRevalidation).
					c.verified[p] = l.start
					if r.StoreMTime == 0 {
						// Our own upload, seen in the store at last.
						r.StoreMTime = e.mtime.UnixNano()
						if err := t.Put(p, r); err != nil {
							return err
						}
					}
				}
				continue
			}
			if l.owedBefore[p] {
				continue // deleted here
			}
			if gone, err := t.GoneHere(p); err != nil || gone {
				if err != nil {
					return err
				}
				continue
			}
			if parentOK, err := t.IsDir(l.dir); err != nil || !parentOK {
				return errorOr(err, ErrNotExist) // removed while listed
			}
			ino, err := c.ix.NextIno()
			if err != nil {
				return err
			}
			r = index.Record{Dir: e.dir, Ino: ino, MTime: time.Now().UnixNano()}
			if !e.dir {
				r.State, r.Size, r.InStore, r.MetaUnknown = Remote, e.size, true, true
				r.MTime, r.StoreMTime = e.mtime.UnixNano(), e.mtime.UnixNano()
				c.verified[p] = l.start // just seen: a lookup after the listing asks nothing more
			}
			if err := t.Put(p, r); err != nil {
				return err
			}
		}
		return nil
	})
}

// deletedHere reports whether every object the store holds below the
// directory p is being deleted here, or was deleted here since a listing
// asked for at asked showed it, so the directory is gone.
func (c *Cache) deletedHere(ctx context.Context, p string, asked time.Time) bool {
	var pending bool
	if err := c.ix.View(func(txn index.View) error {
		pending = txn.HasGoneBelow(p)
		return nil
	}); err != nil {
		return false // shown, as the store lists it
	}
	c.mu.Lock()
	stale := c.settledSinceLocked(p, asked)
	c.mu.Unlock()
	if !pending && !stale {
		return false
	}
	exists, err := c.remoteDirExists(ctx, p)
	return err == nil && !exists
}

// forgetUnlisted forgets the clean and store-only files of l.dir that the
// complete listing l did not show: another host deleted them. A file
// written, fetched or learned while the LIST ran is kept (it may be
// missing from a listing that began before it reached the store), and so
// is one open or owed an upload.
func (c *Cache) forgetUnlisted(l *listing) error {
	for from := ""; ; {
		var gone []string
		var next string
		more := false
		err := c.ix.View(func(txn index.View) error {
			return txn.ForChildrenFrom(l.dir, from, func(name string, r index.Record) error {
				if len(gone) == listPage {
					more, next = true, name
					return index.ErrStop
				}
				if !r.Dir && r.Stored() {
					if _, found := slices.BinarySearch(l.seen, l.hash(name)); !found {
						gone = append(gone, name)
					}
				}
				return nil
			})
		})
		if err != nil {
			return err
		}
		if err := c.forgetNames(l, gone); err != nil {
			return err
		}
		if !more {
			return nil
		}
		from = next
	}
}

// forgetNames removes the records of names in l.dir that a listing did
// not show, where they are still what the listing judged.
func (c *Cache) forgetNames(l *listing, names []string) error {
	if len(names) == 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	touched := c.watches[l.dir]
	return c.updateLocked(func(t *index.Tx) error {
		for _, name := range names {
			p := index.JoinPath(l.dir, name)
			if _, ok := touched[name]; ok || c.open[p] != nil {
				continue
			}
			r, ok, err := t.Get(p)
			if err != nil {
				return err
			}
			if !ok || r.Dir || (r.State != Clean && r.State != Remote) {
				continue
			}
			if pend, err := t.HasPending(p); err != nil || pend {
				if err != nil {
					return err
				}
				continue
			}
			c.dropLocalCopyLocked(p, r) // a LIST shows it gone
			delete(c.verified, p)
			if err := t.Del(p); err != nil {
				return err
			}
		}
		return nil
	})
}

// indexEntries returns the entries the index holds for dir, in name order.
func (c *Cache) indexEntries(dir string) ([]DirEntry, error) {
	var out []DirEntry
	err := c.ix.View(func(txn index.View) error {
		return txn.ForChildren(dir, func(name string, r index.Record) error {
			out = append(out, DirEntry{Name: name, Dir: r.Dir, Kind: r.Kind, Ino: r.Ino})
			return nil
		})
	})
	if err != nil {
		return nil, wrapPath("readdir", dir, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// sameAsListed reports whether r is a file the store holds as listed:
// clean or store-only, of the listed size, and of the listed time where
// the index knows the store's.
func sameAsListed(r index.Record, e listedName) bool {
	return !r.Dir && r.Stored() && r.Size == e.size &&
		(r.StoreMTime == 0 || r.StoreMTime == e.mtime.UnixNano())
}
