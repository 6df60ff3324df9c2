package cache

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/datafiles"
)

// ErrNoSpace is returned when there is no room for new data: the cache is
// at its size limit or its filesystem at the free-space floor, nothing
// clean is left to evict, and the store did not catch up in time.
var ErrNoSpace = fmt.Errorf("cache full: %w", syscall.ENOSPC)

// ErrTooBig is returned for a size change the cache could never hold in
// one step: larger than cache_max_size less what is owed to the store, or
// than dirty_max_size.
var ErrTooBig = fmt.Errorf("size change larger than the cache can hold: %w", syscall.EFBIG)

// notifier wakes every waiter when something changes. Waiters take the
// channel, release their lock, and select on it.
type notifier struct {
	mu sync.Mutex
	ch chan struct{}
}

func newNotifier() *notifier { return &notifier{ch: make(chan struct{})} }

// Broadcast wakes all current waiters.
func (n *notifier) Broadcast() {
	n.mu.Lock()
	close(n.ch)
	n.ch = make(chan struct{})
	n.mu.Unlock()
}

// C returns a channel closed at the next Broadcast.
func (n *notifier) C() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ch
}

// minFree is the free-space floor in bytes.
func (c *Cache) minFree(total int64) int64 {
	floor := c.opts.MinFree
	if pct := int64(c.opts.MinFreePercent / 100 * float64(total)); pct > floor {
		floor = pct
	}
	return floor
}

// roomLocked reports whether extra more local bytes fit under the size
// limit and above the free-space floor. Callers hold c.mu.
func (c *Cache) roomLocked(extra int64) bool {
	if c.opts.MaxSize > 0 && c.used+extra > c.opts.MaxSize {
		return false
	}
	free, total := c.data.Free(false)
	return free-extra >= c.minFree(total)
}

// kickEvictor wakes the evictor without blocking.
func (c *Cache) kickEvictor() {
	select {
	case c.evictKick <- struct{}{}:
	default:
	}
}

// admit waits until extra bytes of new local data fit (evicting clean
// files to make room) and, for writes, until dirty bytes are under
// DirtyMax. It gives up after wait: with ErrNoSpace when there is no
// room, and without error when only the dirty bound is still exceeded (a
// slow store delays writers; it does not fail them).
func (c *Cache) admit(ctx context.Context, extra int64, write bool, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	waiting := false
	defer func() {
		if waiting {
			c.mu.Lock()
			c.wanted -= extra
			c.mu.Unlock()
		}
	}()
	for {
		c.mu.Lock()
		room := c.roomLocked(extra)
		if !room && !waiting {
			// Tell the evictor how much room is wanted beyond its low-water mark.
			waiting = true
			c.wanted += extra
		}
		dirtyOK := !write || c.opts.DirtyMax <= 0 || c.dirty < c.opts.DirtyMax
		wake := c.space.C()
		c.mu.Unlock()
		if room && dirtyOK {
			return nil
		}
		if !room {
			c.kickEvictor()
		}
		if time.Now().After(deadline) {
			if !room {
				return ErrNoSpace
			}
			return nil
		}
		select {
		case <-wake:
		case <-time.After(datafiles.SampleEvery):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// checkGrowth refuses at once a size change that adds extra bytes in one
// step (truncate, fallocate, a write past the end) when they could not fit
// even with every clean file evicted. Growth that fits later is not made
// to wait: what a file holds is admitted again when its version is stored.
// A file written in order grows a write at a time and is never refused
// here; it is bounded by the free-space floor (checkFloor).
func (c *Cache) checkGrowth(extra int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.checkGrowthLocked(extra)
}

// checkGrowthLocked is checkGrowth for callers holding c.mu.
func (c *Cache) checkGrowthLocked(extra int64) error {
	if c.opts.DirtyMax > 0 && extra > c.opts.DirtyMax {
		return ErrTooBig
	}
	return c.couldHoldLocked(extra)
}

// couldHoldLocked reports, as checkGrowth does but for clean bytes (a
// fetch), whether extra more local bytes could fit once every clean file
// is evicted: ErrTooBig past the size limit, ErrNoSpace past the floor.
func (c *Cache) couldHoldLocked(extra int64) error {
	if extra <= 0 {
		return nil
	}
	used, dirty := c.used, c.dirty
	if c.opts.MaxSize > 0 && extra > c.opts.MaxSize-dirty {
		return ErrTooBig
	}
	free, total := c.data.Free(true)
	if extra > total-c.minFree(total) {
		return ErrTooBig // more than the cache's disk could ever hold
	}
	if extra > free+(used-dirty)-c.minFree(total) {
		return ErrNoSpace
	}
	return nil
}

// checkFloor is the write path's guard: an admitted file may keep growing,
// but not below half the free-space floor, which stays for the index.
func (c *Cache) checkFloor(ctx context.Context, n int64) error {
	free, total := c.data.Free(false)
	hard := c.minFree(total) / 2
	if free-n >= hard {
		return nil
	}
	deadline := time.Now().Add(c.opts.SpaceWait)
	for {
		c.kickEvictor()
		free, total = c.data.Free(true)
		if free-n >= c.minFree(total)/2 {
			return nil
		}
		if time.Now().After(deadline) {
			return ErrNoSpace
		}
		select {
		case <-c.space.C():
		case <-time.After(datafiles.SampleEvery):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Usage is a snapshot of the cache's accounting.
type Usage struct {
	LocalBytes int64 // bytes of local data files
	DirtyBytes int64 // bytes not yet in the store
	MaxSize    int64
	FreeBytes  int64 // free on the cache filesystem
}

// Usage returns the current accounting.
func (c *Cache) Usage() Usage {
	c.mu.Lock()
	u := Usage{LocalBytes: c.used, DirtyBytes: c.dirty, MaxSize: c.opts.MaxSize}
	c.mu.Unlock()
	u.FreeBytes, _ = c.data.Free(false)
	return u
}
