package cache

import (
	"context"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/index"
)

// Metadata read-ahead. Synapse keeps media two directory levels below a
// tree (local_content/ab/cd/<id>, remote_content/<server>/ab/cd/<id>, and
// their thumbnail twins), and the kernel resolves a path one name at a
// time. A lookup that finds a directory the index did not know has just
// listed the first page of what lies below it (Store.Lookup); listAhead
// records that page in the index, and the pages after it up to
// Options.ListAheadKeys, so that the lookups, unlinks and rmdirs that
// follow there (a purge, or cold reads, of media this host never saw) are
// answered from the index instead of one LIST each.
//
// The level is the first one the index lacks, which is where the kernel
// asks: on a mount that lost its cache that is the tree's top, and the
// bound keeps a bucket of millions of media from being listed whole
// because one file was looked up. What is learned is what any lookup
// learns: records of objects the store held when the listing was asked
// for, which lookups trust as they trust their own answers, for
// RevalidateAfter, and then check again in the background. Nothing is
// learned over a name removed here since (settled, or owed).

// listAhead starts recording below the directory p what the store holds,
// from the lookup that found p at asked: first, the objects its answer
// carried, complete or not. It does nothing when ListAheadKeys is off, or
// when p or a directory above it was listed ahead within RevalidateAfter.
func (c *Cache) listAhead(p string, first *subtree, complete bool, asked time.Time) {
	if c.opts.ListAheadKeys <= 0 {
		return
	}
	c.mu.Lock()
	for d := p; ; d = index.ParentOf(d) {
		if at, ok := c.listedAhead.get(d); ok && time.Since(at) < c.opts.RevalidateAfter {
			c.mu.Unlock()
			return
		}
		if d == "" {
			break
		}
	}
	c.listedAhead.set(p, asked)
	c.mu.Unlock()
	objs := make([]listedObject, 0, len(first.files))
	for name, f := range first.files {
		objs = append(objs, listedObject{name, f.size, f.mtime})
	}
	c.background(func(life context.Context) {
		if complete || len(objs) >= c.opts.ListAheadKeys {
			c.learnAhead(p, objs, asked)
			return
		}
		// The first page is kept in memory (subtree) only when it was
		// all there is; the pages after it are listed here, the first
		// again among them, in the background of the lookup.
		ctx, cancel := context.WithTimeout(life, c.opts.StoreTimeout)
		defer cancel()
		if err := c.learnTree(ctx, p, c.opts.ListAheadKeys); err != nil && life.Err() == nil {
			c.log.Debug("listing ahead stopped", "dir", p, "err", err)
		}
	})
}

// learnAhead records objs below p in the index, as listed at asked.
func (c *Cache) learnAhead(p string, objs []listedObject, asked time.Time) {
	if len(objs) == 0 {
		return
	}
	if err := c.learnObjects(p, objs, asked); err != nil && !c.closed.Load() {
		c.log.Warn("recording a listing in the index failed", "dir", p, "err", err)
	}
}
