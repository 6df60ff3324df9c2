package cache

import (
	"context"
	"errors"
	"sync/atomic"
	"time"
)

// storeHealth is a circuit breaker for lookups. After a few consecutive
// failures, or one timeout, the store counts as down: lookups of unknown
// names answer "absent" at once instead of each waiting for the store, so
// creating files goes on at full speed during an outage. A background
// probe, not a lookup, finds out when the store is back.
type storeHealth struct {
	failures atomic.Int32 // consecutive failed requests
	down     atomic.Bool
	probing  atomic.Bool
}

// tripAfter consecutive failures open the breaker.
const tripAfter = 3

func (c *Cache) storeIsDown() bool { return c.health.down.Load() }

// StoreUnreachable tells the cache that the store did not answer (as the
// daemon started): it counts as down at once, as in an outage, until the
// probe finds it back.
func (c *Cache) StoreUnreachable(err error) {
	c.health.failures.Store(tripAfter)
	c.noteStoreError(err)
}

// noteStoreOK records a request the store answered.
func (c *Cache) noteStoreOK() {
	c.health.failures.Store(0)
	if c.health.down.CompareAndSwap(true, false) {
		c.log.Info("object store reachable again")
	}
}

// noteStoreError records a failed request; "not found" is an answer, not
// a failure, and so are bytes that fail their check: a store that lies
// about an object is up, and the names it holds must not answer "absent".
func (c *Cache) noteStoreError(err error) {
	if err == nil || isNotFound(err) || errors.Is(err, context.Canceled) || errors.Is(err, errCorrupt) {
		return
	}
	n := c.health.failures.Add(1)
	if n < tripAfter && !errors.Is(err, context.DeadlineExceeded) {
		return
	}
	if c.health.down.CompareAndSwap(false, true) {
		c.log.Warn("object store unreachable; lookups of unknown names answer \"absent\" until it is back", "err", err)
	}
	if c.health.probing.CompareAndSwap(false, true) && !c.background(c.probeStore) {
		c.health.probing.Store(false)
	}
}

// probeStore asks the store about a key that does not exist every
// probeEvery until it answers, then closes the breaker.
func (c *Cache) probeStore(life context.Context) {
	defer c.health.probing.Store(false)
	const probeEvery = 2 * time.Second
	for c.health.down.Load() {
		select {
		case <-life.Done():
			return
		case <-time.After(probeEvery):
		}
		ctx, cancel := context.WithTimeout(life, c.opts.LookupTimeout)
		_, err := c.store.Head(ctx, ".s3mediafs-probe")
		cancel()
		if err == nil || isNotFound(err) {
			c.noteStoreOK()
			return
		}
	}
}
