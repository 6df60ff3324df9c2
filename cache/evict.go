package cache

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/index"
)

// Eviction turns clean files (in the store, not open) into remote ones,
// least recently opened first. Dirty and uploading files are never
// evicted: only the store's copy makes a local copy expendable.

// lowWater is the fraction of MaxSize eviction frees down to, so that it
// does not run again for every new file.
const lowWater = 0.95

// touchLocked records an open of p for the LRU order. It costs no index write:
// accesses are batched by flushAccess. Callers hold c.mu.
func (c *Cache) touchLocked(p string) {
	c.accessed[p] = time.Now().UnixNano()
}

// flushAccess writes the batched access times into the LRU order.
func (c *Cache) flushAccess() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.accessed) == 0 {
		return
	}
	batch := c.ix.BatchLimit(4) // well under Badger's limit: each writes up to four keys
	pending := c.accessed
	c.accessed = map[string]int64{}
	for len(pending) > 0 {
		n := 0
		err := c.updateFreeingLocked(func(t *index.Tx) error {
			for p, at := range pending {
				if n == batch {
					break
				}
				n++
				delete(pending, p)
				old, ok, err := t.LRUGet(p)
				if err != nil {
					return err
				}
				if ok && old < at {
					if err := t.LRUSet(p, at); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			c.log.Warn("recording access times failed", "err", err)
			return
		}
	}
}

func (c *Cache) evictLoop(ctx context.Context) {
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.evictKick:
		case <-tick.C:
		}
		c.flushAccess()
		c.evict(ctx)
	}
}

// needEviction reports whether the cache is over a limit.
func (c *Cache) needEviction() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.opts.MaxSize > 0 && c.used+c.wanted > int64(float64(c.opts.MaxSize)*lowWater) {
		return true
	}
	free, total := c.data.Free(true)
	return free-c.wanted < c.minFree(total)
}

// evict frees space while the cache is over a limit, and drops files not
// opened within MaxAge. It stops when nothing evictable is left.
func (c *Cache) evict(ctx context.Context) {
	var cutoff int64 = -1
	if c.opts.MaxAge > 0 {
		cutoff = time.Now().Add(-c.opts.MaxAge).UnixNano()
	}
	var from []byte
	for ctx.Err() == nil {
		over := c.needEviction()
		if !over && cutoff < 0 {
			return
		}
		cands, next, err := c.lruBatch(from, 64)
		if err != nil {
			c.log.Error("reading the LRU order failed", "err", err)
			return
		}
		if len(cands) == 0 {
			return
		}
		from = next
		for _, cand := range cands {
			if !over && cand.At >= cutoff {
				return // the rest are younger than MaxAge
			}
			if c.evictOne(cand.Path) && over {
				over = c.needEviction()
			}
		}
	}
}

// lruBatch reads up to n entries of the LRU order, oldest first, from key
// from on, and the key to continue at.
func (c *Cache) lruBatch(from []byte, n int) ([]index.LRUEntry, []byte, error) {
	var out []index.LRUEntry
	var next []byte
	err := c.ix.View(func(txn index.View) (err error) {
		out, next, err = txn.LRUFrom(from, n)
		return err
	})
	return out, next, err
}

// evictOne turns p from clean to remote if it is still clean and unused,
// and the store has shown that it holds this version.
func (c *Cache) evictOne(p string) bool {
	r, ok, err := c.readRecord(p)
	if err != nil || !index.Evictable(r, ok) {
		return false
	}
	if r.StoreMTime == 0 && !c.confirmStored(p, r) {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open[p] != nil {
		return false
	}
	var data string
	err = c.updateFreeingLocked(func(t *index.Tx) error {
		r, ok, err := t.Get(p)
		if err != nil || !index.Evictable(r, ok) || r.StoreMTime == 0 {
			return err
		}
		data = r.Data
		r.State, r.Data = Remote, ""
		return t.Put(p, r)
	})
	if err != nil {
		c.log.Error("eviction failed", "path", p, "err", err)
		return false
	}
	if data == "" {
		return false
	}
	c.data.Remove(data)
	c.stats.evictions.Add(1)
	c.log.Debug("evicted", "path", p)
	return true
}

// confirmStored asks the store (HEAD) whether it holds the version of p
// this host uploaded, which it has not shown since, before the local copy
// goes: that copy may be the last one (see forgetRemote). It
// records the store's time and reports whether the copy may go.
func (c *Cache) confirmStored(p string, r index.Record) bool {
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.StoreTimeout)
	defer cancel()
	o, err := c.store.Head(ctx, p)
	size, mtime := o.Size, o.MTime
	switch {
	case isNotFound(err):
		c.forgetRemote(p, r)
		return false
	case err != nil:
		c.noteStoreError(err)
		return false
	case size != r.Size:
		return false // another host's version: revalidation settles it
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	confirmed := false
	err = c.updateFreeingLocked(func(t *index.Tx) error {
		cur, ok, err := t.Get(p)
		if err != nil || !index.Evictable(cur, ok) || cur.Ino != r.Ino || cur.Gen != r.Gen {
			return err
		}
		cur.StoreMTime = mtime.UnixNano()
		confirmed = true
		return t.Put(p, cur)
	})
	return err == nil && confirmed
}

// sweepOrphans removes data files no record names: left by a crash
// between writing a file and committing its record. It runs in the
// background after an unclean stop only. A data file is never judged by
// its times, which users set (cp -p, touch -d) and clocks step: what the
// index named when the sweep began is kept, and so is every data file
// made since the cache opened (see births).
func (c *Cache) sweepOrphans(ctx context.Context) {
	defer c.births.stop()
	referenced, err := c.referencedData(ctx)
	if err != nil {
		c.log.Warn("sweeping orphaned data files failed", "err", err)
		return
	}
	c.removeOrphans(ctx, referenced)
}

// referencedData returns the data files the index names now.
func (c *Cache) referencedData(ctx context.Context) (map[string]struct{}, error) {
	referenced := map[string]struct{}{}
	err := c.ix.View(func(txn index.View) error {
		return txn.ForRecords(ctx.Err, func(_ string, r index.Record) error {
			if r.Data != "" {
				referenced[r.Data] = struct{}{}
			}
			return nil
		})
	})
	return referenced, err
}

// removeOrphans removes the data files that are neither in referenced nor
// made since the cache opened.
func (c *Cache) removeOrphans(ctx context.Context, referenced map[string]struct{}) {
	removed := 0
	err := filepath.WalkDir(c.dataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || ctx.Err() != nil {
			return ctx.Err()
		}
		if _, ok := referenced[d.Name()]; ok || c.births.made(d.Name()) {
			return nil
		}
		if err := os.Remove(path); err == nil {
			removed++
		}
		return nil
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		c.log.Warn("sweeping orphaned data files failed", "err", err)
	}
	c.log.Info("swept data files left by an unclean stop", "removed", removed)
}

// births records the data files made since the cache opened, while an
// orphan sweep may run: any of them may be named by a record the sweep's
// snapshot of the index does not show. An id is recorded before its file
// exists, so the sweep never meets a file it cannot place.
type births struct {
	mu  sync.Mutex // guards the fields below
	on  bool
	ids map[string]struct{}
}

func (b *births) start() {
	b.mu.Lock()
	b.on, b.ids = true, map[string]struct{}{}
	b.mu.Unlock()
}

func (b *births) stop() {
	b.mu.Lock()
	b.on, b.ids = false, nil
	b.mu.Unlock()
}

// add records that the data file id is about to be made.
func (b *births) add(id string) {
	b.mu.Lock()
	if b.on {
		b.ids[id] = struct{}{}
	}
	b.mu.Unlock()
}

// made reports whether id was made since the cache opened.
func (b *births) made(id string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.ids[id]
	return ok
}
