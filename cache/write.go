package cache

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/index"
)

// whileWriting runs fn holding of.mu shared, with the file marked dirty
// and its data file set, so that the write fn makes is covered by the
// next flush (which takes of.mu exclusively).
func (h *Handle) whileWriting(ctx context.Context, fn func() error) error {
	if !h.writable {
		return fmt.Errorf("write: %w", ErrInvalid)
	}
	if err := h.ensureData(ctx); err != nil {
		return err
	}
	of := h.of
	if !of.dirty.Load() {
		// A new version starts: it must fit, and wait while too much is
		// owed to the store.
		if err := h.c.admit(ctx, 0, true, h.c.opts.SpaceWait); err != nil {
			return err
		}
	}
	of.mu.RLock()
	defer of.mu.RUnlock()
	for !of.dirty.Load() {
		of.mu.RUnlock()
		err := h.c.markDirty(of)
		of.mu.RLock()
		if err != nil {
			return err
		}
	}
	return fn()
}

// WriteAt writes to the local data file only; the upload happens after close.
func (h *Handle) WriteAt(ctx context.Context, b []byte, off int64) (int, error) {
	if err := h.c.checkFloor(ctx, int64(len(b))); err != nil {
		return 0, err
	}
	var n int
	err := h.whileWriting(ctx, func() error {
		if err := h.checkHoleTo(off); err != nil {
			return err
		}
		var err error
		n, err = h.of.data.WriteAt(b, off)
		h.c.data.Consumed(int64(n))
		return err
	})
	return n, err
}

// Truncate sets the file's size. Emptying a file that only the store has
// does not fetch it.
func (h *Handle) Truncate(ctx context.Context, size int64) error {
	if size < 0 {
		return ErrInvalid
	}
	if size == 0 {
		if err := h.emptyData(); err != nil {
			return err
		}
	}
	return h.whileWriting(ctx, func() error {
		if err := h.checkHoleTo(size); err != nil {
			return err
		}
		if err := h.of.data.Truncate(size); err != nil {
			return err
		}
		if size == 0 {
			clearFlushOnClose(h.of.data)
		}
		return nil
	})
}

// clearFlushOnClose releases a descriptor of f, just emptied. ext4 marks a
// file emptied by a truncate for a flush of its delayed allocations at the
// next release of any descriptor of it (auto_da_alloc, for programs that
// rewrite a file in place without fsync); here that release would be the
// writer's close, paying the whole rewrite's writeback (a second for a
// GiB) while the upload reads the same file. Released now, with nothing
// yet to flush, the mark is spent. What it guards against is power loss,
// for which the contract asks fsync. Elsewhere this is an open and a close.
func clearFlushOnClose(f *os.File) {
	raw, err := f.SyscallConn()
	if err != nil {
		return
	}
	raw.Control(func(fd uintptr) {
		if g, err := os.Open(fmt.Sprintf("/proc/self/fd/%d", fd)); err == nil {
			g.Close()
		}
	})
}

// checkHoleTo admits a change of the file's size to end that leaves the
// bytes between the current end and end unwritten: a hole grows the file
// in one step (see checkGrowth), where writes in order at the end grow it
// a write at a time. Callers hold of.mu shared, with data set.
func (h *Handle) checkHoleTo(end int64) error {
	fi, err := h.of.data.Stat()
	if err != nil {
		return fmt.Errorf("stat data file: %w", err)
	}
	return h.c.checkGrowth(end - fi.Size())
}

// emptyData gives a store-only file an empty local data file.
func (h *Handle) emptyData() error {
	of, c := h.of, h.c
	of.mu.Lock()
	defer of.mu.Unlock()
	if of.data != nil {
		return nil
	}
	id, f, err := c.data.New()
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	err = c.updateLocked(func(t *index.Tx) error {
		r, ok, err := t.Get(of.path)
		if err != nil || !ok {
			return errorOr(err, ErrNotExist)
		}
		r.State, r.Data, r.Size, r.Gen = c.versionState(of.path), id, 0, r.Gen+1
		r.MTime = time.Now().UnixNano()
		return c.putVersion(t, of.path, r)
	})
	if err != nil {
		f.Close()
		c.data.Remove(id)
		return err
	}
	of.data = f
	of.dirty.Store(true)
	c.q.Supersede(of.path)
	return nil
}

// markDirty records that a new version of the file is being written: the
// generation moves on (so an upload in flight cannot mark it clean) and an
// upload is owed.
func (c *Cache) markDirty(of *openFile) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if of.dirty.Load() {
		return nil
	}
	if !of.unlinked {
		err := c.updateLocked(func(t *index.Tx) error {
			r, ok, err := t.Get(of.path)
			if err != nil || !ok {
				return errorOr(err, ErrNotExist)
			}
			r.Gen++
			r.State = c.versionState(of.path)
			return c.putVersion(t, of.path, r)
		})
		if err != nil {
			return err
		}
		c.q.Supersede(of.path)
	}
	of.dirty.Store(true)
	return nil
}

// putVersion writes a new local version of p and, unless it stays local,
// owes its upload.
func (c *Cache) putVersion(t *index.Tx, p string, r index.Record) error {
	if err := t.Put(p, r); err != nil {
		return err
	}
	if r.State == Local {
		return nil
	}
	return t.SetPending(p)
}

// Flush records the size written and queues the upload. It is what makes
// close() durable against a daemon crash: the bytes are in the data file
// and the index says an upload is owed.
func (h *Handle) Flush(ctx context.Context) error {
	if !h.writable {
		return nil
	}
	if err := h.commit(false); err != nil {
		return err
	}
	return h.waitStored(ctx)
}

// waitStored, in synchronous mode, waits until the store has the version
// just committed, or reports why it does not within StoreTimeout. The
// data stays safe in the cache either way and keeps being retried.
func (h *Handle) waitStored(ctx context.Context) error {
	c := h.c
	if !c.opts.Synchronous {
		return nil
	}
	c.mu.Lock()
	p, gone := h.of.path, h.of.unlinked
	c.mu.Unlock()
	if gone {
		return nil
	}
	deadline := time.NewTimer(c.opts.StoreTimeout)
	defer deadline.Stop()
	for {
		wake := c.uploadsDone.C()
		var r index.Record
		var ok, pending bool
		if err := c.ix.View(func(txn index.View) error {
			var err error
			if r, ok, err = txn.Get(p); err != nil {
				return err
			}
			pending, err = txn.HasPending(p)
			return err
		}); err != nil {
			return err
		}
		if !ok || r.Dir || !pending && (r.State == Clean || r.State == Local) {
			return nil
		}
		select {
		case <-wake:
			if err := c.q.Failure(p); err != nil {
				return fmt.Errorf("store %q: %w: %w", p, ErrStore, err)
			}
		case <-deadline.C:
			return fmt.Errorf("store %q: not confirmed in %v; it stays queued: %w", p, c.opts.StoreTimeout, ErrStore)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Fsync is Flush plus fsync of the data file and the index, so the file
// also survives power loss.
func (h *Handle) Fsync(ctx context.Context) error {
	if err := h.commit(true); err != nil {
		return err
	}
	if err := h.c.Sync(); err != nil {
		return err
	}
	if h.writable {
		return h.waitStored(ctx)
	}
	return nil
}

func (h *Handle) commit(syncData bool) error {
	of, c := h.of, h.c
	of.mu.Lock()
	defer of.mu.Unlock()
	if of.data == nil {
		return nil
	}
	if syncData {
		if err := of.data.Sync(); err != nil {
			return fmt.Errorf("fsync data file: %w", err)
		}
	}
	if !of.live() {
		return nil
	}
	fi, err := of.data.Stat()
	if err != nil {
		return fmt.Errorf("stat data file: %w", err)
	}
	fp := fingerprintOf(fi)
	if !of.dirty.Load() && fp == of.committed {
		return nil // direct writers wrote nothing since the last commit
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := of.path
	if !of.unlinked {
		err = c.updateFreeingLocked(func(t *index.Tx) error {
			r, ok, err := t.Get(p)
			if err != nil || !ok {
				return errorOr(err, ErrNotExist)
			}
			if err := c.refuseDirectHoleLocked(of, fi, r.Size); err != nil {
				return err
			}
			r.Size = fi.Size()
			r.MTime = fi.ModTime().UnixNano()
			r.Gen++
			r.State = c.versionState(p)
			return c.putVersion(t, p, r)
		})
		if err != nil {
			return err
		}
		c.q.Add(p)
	}
	of.committed = fp
	of.dirty.Store(false)
	return nil
}

// refuseDirectHoleLocked is checkHoleTo for writes the daemon never saw (FUSE
// passthrough): a version that grew past the last one's size by a hole
// that could not fit is not recorded. The data file goes back to that
// size, and the writer's close(2) reports the refusal. Callers hold c.mu.
func (c *Cache) refuseDirectHoleLocked(of *openFile, fi os.FileInfo, lastSize int64) error {
	if of.directWriters.Load() == 0 || fi.Size() <= lastSize {
		return nil
	}
	var allocated int64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		allocated = st.Blocks * 512
	}
	hole := fi.Size() - lastSize - allocated
	err := c.checkGrowthLocked(hole)
	if err == nil {
		return nil
	}
	if terr := of.data.Truncate(lastSize); terr != nil {
		return fmt.Errorf("%w (and cutting it back failed: %w)", err, terr)
	}
	return err
}

// Allocate is fallocate(2) on the file.
func (h *Handle) Allocate(ctx context.Context, off, size int64, mode uint32) error {
	return h.whileWriting(ctx, func() error {
		if err := h.checkHoleTo(off + size); err != nil {
			return err
		}
		return syscall.Fallocate(int(h.of.data.Fd()), mode, off, size)
	})
}
