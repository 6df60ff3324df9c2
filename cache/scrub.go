package cache

import (
	"context"
	"os"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/index"
)

// The scrub reads the clean files the cache holds, at no more than
// ScrubRate bytes a second, and checks each against the CRC-32C its
// record keeps (of the bytes uploaded, or checked on arrival). A copy that
// no longer matches (a bad disk, a hand that edited cache_dir) is dropped:
// the record becomes Remote and the next read fetches the object again.
// A copy the store has not shown back since this host uploaded it may be
// the last one: it goes to lost+found rather than away (dropLocalCopyLocked).
// The walk goes through the index in key order, one batch a transaction,
// and starts again from the top when it has passed the end.

// scrubBatch is how many records one index read of the scrub takes.
const scrubBatch = 256

// scrubBatchPause is the rest between two batches of the walk.
const scrubBatchPause = 10 * time.Millisecond

// scrubPause is how long the scrub rests after a full pass, or when the
// cache holds nothing to check.
const scrubPause = time.Minute

// scrubLoop runs the scrub until ctx ends.
func (c *Cache) scrubLoop(ctx context.Context) {
	var after []byte
	checkedThisPass := 0
	for ctx.Err() == nil {
		type item struct {
			p string
			r index.Record
		}
		var batch []item
		err := c.ix.View(func(txn index.View) (err error) {
			after, err = txn.ForFilesFrom(after, scrubBatch, func(p string, r index.Record) {
				if r.State == Clean && r.HasCRC && r.Data != "" {
					batch = append(batch, item{p, r})
				}
			})
			return err
		})
		if err != nil {
			c.log.Warn("scrub: reading the index failed", "err", err)
			after = nil
		}
		for _, it := range batch {
			if ctx.Err() != nil {
				return
			}
			c.scrubOne(ctx, it.p, it.r)
			checkedThisPass++
		}
		// A walk through a large index of store-only records reads
		// nothing, but its transactions are not free either.
		if !sleepCtx(ctx, scrubBatchPause) {
			return
		}
		if after == nil {
			if checkedThisPass > 0 {
				c.log.Debug("scrub: pass done", "files", checkedThisPass)
			}
			checkedThisPass = 0
			if !sleepCtx(ctx, scrubPause) {
				return
			}
		}
	}
}

// scrubOne checks one clean file, then rests as long as reading it costs
// at ScrubRate.
func (c *Cache) scrubOne(ctx context.Context, p string, r index.Record) {
	c.mu.Lock()
	busy := c.open[p] != nil
	c.mu.Unlock()
	if busy {
		return // being read or written: the next pass checks it
	}
	f, err := os.Open(c.data.Path(r.Data))
	if err != nil {
		return // evicted or replaced meanwhile
	}
	crc, err := crcOfFile(f, r.Size)
	f.Close()
	c.stats.scrubbed.Add(1)
	if err == nil && crc == r.CRC32C {
		sleepCtx(ctx, time.Duration(float64(r.Size)/float64(c.opts.ScrubRate)*float64(time.Second)))
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open[p] != nil {
		return
	}
	dropped := false
	uerr := c.updateFreeingLocked(func(t *index.Tx) error {
		cur, ok, err := t.Get(p)
		if err != nil || !ok || cur.Ino != r.Ino || cur.Gen != r.Gen || cur.Data != r.Data || cur.State != Clean {
			return err // changed while it was read: not this copy's fault
		}
		c.dropLocalCopyLocked(p, cur)
		cur.State, cur.Data = Remote, ""
		dropped = true
		return t.Put(p, cur)
	})
	if uerr != nil {
		c.log.Error("scrub: dropping a damaged copy failed", "path", p, "err", uerr)
		return
	}
	if dropped {
		c.stats.scrubCorrupt.Add(1)
		c.log.Warn("scrub: a cached copy no longer matches its checksum; dropped, the next read fetches it again",
			"path", p, "want_crc32c", r.CRC32C, "got_crc32c", crc, "read_err", err)
	}
}

// sleepCtx waits for d or for ctx to end; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
