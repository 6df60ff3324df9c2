package cache

import (
	"context"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// queue schedules the paths whose store object must be brought in line with
// the index: an upload for a dirty file, a delete for a tombstone. A job
// names a path, not an operation, and the worker reads what is owed when it
// runs; at most one job per path is in flight, so a PUT and a DELETE of one
// key never race and the index's newest state always wins.
//
// The durable queue is the index's pending markers; this is its in-memory
// schedule.
type queue struct {
	c *Cache

	mu       sync.Mutex // guards every field below
	changed  *sync.Cond // signalled when work is added or finishes
	finished *notifier  // broadcast after every job, for synchronous writers
	order    []string   // FIFO of paths ready to run
	queued   map[string]bool
	inflight map[string]context.CancelFunc
	again    map[string]bool // re-run once the in-flight job ends
	retry    map[string]*time.Timer
	backoffs map[string]*backoff.ExponentialBackOff
	failures map[string]int       // consecutive failures per path
	reported map[string]string    // last permanent error logged per path
	lastErr  map[string]error     // the error of a path's last job, until one succeeds
	since    map[string]time.Time // when each owed path was first queued
	scanning bool                 // the index's owed work is still being read
	stopped  bool
	workers  sync.WaitGroup
}

func newQueue(c *Cache) *queue {
	q := &queue{
		c:        c,
		queued:   map[string]bool{},
		inflight: map[string]context.CancelFunc{},
		again:    map[string]bool{},
		retry:    map[string]*time.Timer{},
		backoffs: map[string]*backoff.ExponentialBackOff{},
		failures: map[string]int{},
		lastErr:  map[string]error{},
		since:    map[string]time.Time{},
		reported: map[string]string{},
	}
	q.changed = sync.NewCond(&q.mu)
	q.finished = newNotifier()
	return q
}

func (q *queue) start(ctx context.Context, workers int) {
	context.AfterFunc(ctx, func() {
		q.mu.Lock()
		q.stopped = true
		for _, t := range q.retry {
			t.Stop()
		}
		for _, cancel := range q.inflight {
			cancel()
		}
		q.changed.Broadcast()
		q.mu.Unlock()
	})
	for range workers {
		q.workers.Add(1)
		go q.work(ctx)
	}
}

// setScanning marks the start-up scan of owed work as running or done;
// drain waits for it, so nothing owed is missed.
func (q *queue) setScanning(on bool) {
	q.mu.Lock()
	q.scanning = on
	q.changed.Broadcast()
	q.mu.Unlock()
}

// wait blocks until every worker has returned.
func (q *queue) wait() { q.workers.Wait() }

// add schedules p now, cancelling a pending retry delay: new work for a path
// deserves a fresh attempt.
func (q *queue) add(p string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.addLocked(p)
}

func (q *queue) addLocked(p string) {
	delete(q.lastErr, p) // a new attempt: an old failure says nothing of it
	if _, ok := q.since[p]; !ok {
		q.since[p] = time.Now()
	}
	if t, ok := q.retry[p]; ok {
		t.Stop()
		delete(q.retry, p)
	}
	if _, ok := q.inflight[p]; ok {
		q.again[p] = true
		return
	}
	if q.queued[p] {
		return
	}
	q.queued[p] = true
	q.order = append(q.order, p)
	q.changed.Broadcast()
}

// addAfter schedules p once d has passed. Until then p counts as owed, as
// a retry does, so drain waits for it.
func (q *queue) addAfter(p string, d time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.stopped {
		q.addAfterLocked(p, d)
	}
}

func (q *queue) addAfterLocked(p string, d time.Duration) {
	if t, ok := q.retry[p]; ok {
		t.Stop()
	}
	if _, ok := q.since[p]; !ok {
		q.since[p] = time.Now()
	}
	q.retry[p] = time.AfterFunc(d, func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		if q.stopped {
			return
		}
		delete(q.retry, p)
		q.addLocked(p)
	})
}

// supersede marks the in-flight job for p, if any, as out of date: it is
// run again once it ends. It is deliberately not cancelled: a request
// already on the wire may still be carried out by the store after we give
// up on it, and then land after the request that was meant to follow it
// (a stale PUT over a newer one, a DELETE over a re-created file).
// Letting it finish keeps the store's order the index's order.
func (q *queue) supersede(p string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.inflight[p]; ok {
		q.again[p] = true
	}
}

// owed counts paths queued, in flight or waiting to retry.
func (q *queue) owedLocked() int {
	n := len(q.queued) + len(q.retry)
	if q.scanning {
		n++
	}
	for p := range q.inflight {
		if !q.queued[p] {
			n++
		}
	}
	return n
}

// drain waits until nothing is owed or ctx ends, returning what is left.
func (q *queue) drain(ctx context.Context) (int, error) {
	stop := context.AfterFunc(ctx, func() {
		q.mu.Lock()
		q.changed.Broadcast()
		q.mu.Unlock()
	})
	defer stop()
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.owedLocked() > 0 && ctx.Err() == nil && !q.stopped {
		q.changed.Wait()
	}
	if n := q.owedLocked(); n > 0 {
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		return n, ErrClosed
	}
	return 0, nil
}

func (q *queue) work(ctx context.Context) {
	defer q.workers.Done()
	for {
		q.mu.Lock()
		for len(q.order) == 0 && !q.stopped {
			q.changed.Wait()
		}
		if q.stopped {
			q.mu.Unlock()
			return
		}
		p := q.order[0]
		q.order[0] = ""
		q.order = q.order[1:]
		delete(q.queued, p)
		jobCtx, cancel := context.WithCancel(ctx)
		q.inflight[p] = cancel
		q.mu.Unlock()

		again, err := q.c.syncPath(jobCtx, p)
		cancelled := jobCtx.Err() != nil
		cancel()

		q.mu.Lock()
		delete(q.inflight, p)
		switch {
		case q.stopped:
		case err != nil && !cancelled:
			q.lastErr[p] = err
			q.scheduleRetryLocked(p, err)
		case err != nil || again || q.again[p]:
			// Cancelled by a newer change, or the index moved on while
			// the request ran: look again at once.
			delete(q.again, p)
			q.addLocked(p)
		default:
			delete(q.since, p)
			delete(q.lastErr, p)
			delete(q.backoffs, p)
			delete(q.reported, p)
			delete(q.failures, p)
		}
		delete(q.again, p)
		q.changed.Broadcast()
		q.mu.Unlock()
		q.finished.Broadcast()
	}
}

// failure returns the error of p's last job if it failed.
func (q *queue) failure(p string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.lastErr[p]
}

// scheduleRetryLocked re-runs p after a capped, jittered exponential delay.
// depth returns how many paths are owed and how long the oldest has waited.
func (q *queue) depth() (int, time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var oldest time.Time
	for _, t := range q.since {
		if oldest.IsZero() || t.Before(oldest) {
			oldest = t
		}
	}
	if oldest.IsZero() {
		return q.owedLocked(), 0
	}
	return q.owedLocked(), time.Since(oldest)
}

func (q *queue) scheduleRetryLocked(p string, err error) {
	q.c.stats.storeError(err, isPermanent(err))
	b := q.backoffs[p]
	if b == nil {
		b = backoff.NewExponentialBackOff()
		b.InitialInterval = q.c.opts.RetryMin
		b.MaxInterval = q.c.opts.RetryMax
		q.backoffs[p] = b
	}
	delay := b.NextBackOff()
	if delay < 0 || delay > q.c.opts.RetryMax {
		delay = q.c.opts.RetryMax
	}
	if isPermanent(err) {
		// Logged once per path and reason; retried anyway, so fixing the
		// bucket policy or credentials heals the queue without a restart.
		if q.reported[p] != err.Error() {
			q.reported[p] = err.Error()
			q.c.log.Error("store refused a request; will keep retrying", "path", p, "err", err, "retry_in", delay)
		}
	} else if n := q.failures[p] + 1; n&(n-1) == 0 {
		// Warn at the 1st, 2nd, 4th, 8th… failure: an outage is visible
		// without a line per file per retry.
		q.c.log.Warn("store request failed; will retry", "path", p, "failures", n, "err", err, "retry_in", delay)
	}
	q.failures[p]++
	q.addAfterLocked(p, delay)
}
