package cache

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/index"
	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// learnTree records every object the store holds below the directory p
// that the index lacks (with the directories they imply), or the first
// max of them (0: all): a rename must move them all, a read-ahead
// (listahead.go) stops at its bound. It does not hold the index lock
// while listing.
func (c *Cache) learnTree(ctx context.Context, p string, max int) error {
	var page []listedObject
	var pageErr error
	asked := time.Now()
	flush := func() bool {
		pageErr = c.learnObjects(p, page, asked)
		page = page[:0]
		return pageErr == nil
	}
	seen := 0
	err := c.store.List(ctx, p+"/", true, func(e objstore.Entry) bool {
		if e.Dir || e.Name == "" || strings.HasSuffix(e.Name, "/") {
			return true // folder markers: their directories come with the objects
		}
		page = append(page, listedObject{e.Name, e.Size, e.MTime})
		seen++
		if max > 0 && seen >= max {
			return false
		}
		return len(page) < c.moveBatchSize() || flush()
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

// learnObjects records the objects at p/<name> the index lacks, from a
// listing asked for at asked.
func (c *Cache) learnObjects(p string, objs []listedObject, asked time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.updateLocked(func(t *index.Tx) error {
		for _, o := range objs {
			full := index.JoinPath(p, o.name)
			if c.checkPath(full) != nil {
				continue // a name no local tool could use stays behind
			}
			if c.settledSinceLocked(full, asked) {
				continue // deleted here after the listing was asked for
			}
			learned, err := c.learnPathTxn(t, full, o.size, o.mtime)
			if err != nil {
				return err
			}
			if learned {
				// The listing confirmed the object as a lookup would.
				c.verified[full] = asked
				c.rememberSmallLocked(full, o.size)
			}
		}
		return nil
	})
}

// settledSinceLocked reports whether an owed delete of p landed at or
// after asked: a store answer asked for then may predate it. Callers hold
// c.mu.
func (c *Cache) settledSinceLocked(p string, asked time.Time) bool {
	at, ok := c.settled.get(p)
	return ok && !at.Before(asked)
}

// learnPathTxn records the object at p and its directories, where the
// index knows nothing of them and nothing was removed here; learned
// reports whether it did.
func (c *Cache) learnPathTxn(t *index.Tx, p string, size int64, mtime time.Time) (learned bool, err error) {
	if _, ok, err := t.Get(p); err != nil || ok {
		return false, err
	}
	if gone, err := t.GoneHere(p); err != nil || gone {
		return false, err
	}
	parent := index.ParentOf(p)
	if ok, err := t.IsDir(parent); err != nil {
		return false, err
	} else if !ok {
		if _, exists, err := t.Get(parent); err != nil || exists {
			return false, err // a file where a directory would be: leave it
		}
		if err := c.learnDirTxn(t, parent); err != nil {
			return false, err
		}
	}
	ino, err := c.ix.NextIno()
	if err != nil {
		return false, err
	}
	return true, t.Put(p, index.Record{State: Remote, Ino: ino, Size: size, InStore: true, MetaUnknown: true,
		MTime: mtime.UnixNano(), StoreMTime: mtime.UnixNano()})
}

// learnDirTxn records the directory p and those above it that are missing.
func (c *Cache) learnDirTxn(t *index.Tx, p string) error {
	if p == "" {
		return nil
	}
	if _, ok, err := t.Get(p); err != nil || ok {
		return err
	}
	if err := c.learnDirTxn(t, index.ParentOf(p)); err != nil {
		return err
	}
	ino, err := c.ix.NextIno()
	if err != nil {
		return err
	}
	return t.Put(p, index.Record{Dir: true, Ino: ino, MTime: time.Now().UnixNano()})
}
