package cache

import (
	"github.com/s3mediafs/s3mediafs/cache/index"
)

// State is where a file's bytes are (index.State).
type State = index.State

// The states of a file; the index package documents each.
const (
	Dirty     = index.Dirty
	Uploading = index.Uploading
	Clean     = index.Clean
	Remote    = index.Remote
	Local     = index.Local
	Special   = index.Special
)

// updateLocked runs fn in a read-write index transaction and, once it commits,
// applies its accounting. Callers hold c.mu, which also makes the
// read-modify-write of the counters safe.
func (c *Cache) updateLocked(fn func(t *index.Tx) error) error {
	return c.updateAboveLocked(c.ix.Update, fn)
}

// updateFreeingLocked is updateLocked for a write that makes room or
// leads to it (index.DB.UpdateFreeing): an upload's steps, a delete, an
// eviction, a written file's commit, which a full cache filesystem must
// still let through or nothing in it could ever go. Callers hold c.mu.
func (c *Cache) updateFreeingLocked(fn func(t *index.Tx) error) error {
	return c.updateAboveLocked(c.ix.UpdateFreeing, fn)
}

func (c *Cache) updateAboveLocked(update func(index.Acct, func(string), func(*index.Tx) error) (index.Acct, error),
	fn func(t *index.Tx) error) error {
	if c.closed.Load() {
		return ErrClosed
	}
	d, err := update(index.Acct{Used: c.used, Dirty: c.dirty, DirtyFiles: c.dirtyFiles}, c.touchedLocked, fn)
	if err != nil {
		return err
	}
	c.dirtyFiles += d.DirtyFiles
	if d.Used != 0 || d.Dirty != 0 {
		c.used += d.Used
		c.dirty += d.Dirty
		c.space.Broadcast()
		if c.opts.MaxSize > 0 && c.used > int64(float64(c.opts.MaxSize)*lowWater) {
			c.kickEvictor()
		}
	}
	return nil
}

// touchedLocked tells a listing in progress of p's directory that p
// changed meanwhile (see forgetUnlisted). Callers hold c.mu.
func (c *Cache) touchedLocked(p string) {
	if len(c.watches) == 0 {
		return
	}
	dir, name := index.SplitPath(p)
	if w := c.watches[dir]; w != nil {
		w[name] = struct{}{}
	}
}

// readRecord is index.Get in a read-only transaction of its own.
func (c *Cache) readRecord(p string) (r index.Record, ok bool, err error) {
	err = c.ix.View(func(txn index.View) error {
		r, ok, err = txn.Get(p)
		return err
	})
	return r, ok, err
}
