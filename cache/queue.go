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
	jobs     map[string]*job
	scanning bool // the index's owed work is still being read
	stopped  bool
	workers  sync.WaitGroup
}

// job is the schedule of one path. It exists while the path is owed, and
// goes once its work has succeeded.
type job struct {
	since    time.Time          // when the path was first queued
	queued   bool               // in order, waiting for a worker
	cancel   context.CancelFunc // set while a worker runs it
	again    bool               // run again once the worker ends
	retry    *time.Timer        // set while waiting to retry
	backoff  *backoff.ExponentialBackOff
	failures int    // consecutive failures
	reported string // the last permanent error logged
	lastErr  error  // the last run's error, until a new attempt
}

func (j *job) owed() bool { return j.queued || j.cancel != nil || j.retry != nil }

func newQueue(c *Cache) *queue {
	q := &queue{c: c, jobs: map[string]*job{}}
	q.changed = sync.NewCond(&q.mu)
	q.finished = newNotifier()
	return q
}

// jobOf returns p's job, making it if p has none. q.mu is held.
func (q *queue) jobOf(p string) *job {
	j := q.jobs[p]
	if j == nil {
		j = &job{since: time.Now()}
		q.jobs[p] = j
	}
	return j
}

func (q *queue) start(ctx context.Context, workers int) {
	context.AfterFunc(ctx, func() {
		q.mu.Lock()
		q.stopped = true
		for _, j := range q.jobs {
			if j.retry != nil {
				j.retry.Stop()
			}
			if j.cancel != nil {
				j.cancel()
			}
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
	q.enqueue(p)
}

// enqueue is add with q.mu held.
func (q *queue) enqueue(p string) {
	j := q.jobOf(p)
	j.lastErr = nil // a new attempt: an old failure says nothing of it
	if j.retry != nil {
		j.retry.Stop()
		j.retry = nil
	}
	if j.cancel != nil {
		j.again = true
		return
	}
	if j.queued {
		return
	}
	j.queued = true
	q.order = append(q.order, p)
	q.changed.Broadcast()
}

// addAfter schedules p once d has passed. Until then p counts as owed, as
// a retry does, so drain waits for it.
func (q *queue) addAfter(p string, d time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.stopped {
		q.enqueueAfter(p, d)
	}
}

// enqueueAfter is addAfter with q.mu held.
func (q *queue) enqueueAfter(p string, d time.Duration) {
	j := q.jobOf(p)
	if j.retry != nil {
		j.retry.Stop()
	}
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		if q.stopped || j.retry != t || q.jobs[p] != j {
			return // stopped, or superseded by a newer delay or attempt
		}
		j.retry = nil
		q.enqueue(p)
	})
	j.retry = t
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
	if j := q.jobs[p]; j != nil && j.cancel != nil {
		j.again = true
	}
}

// owedCount counts paths queued, in flight or waiting to retry. q.mu is
// held.
func (q *queue) owedCount() int {
	n := 0
	if q.scanning {
		n++
	}
	for _, j := range q.jobs {
		if j.owed() {
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
	for q.owedCount() > 0 && ctx.Err() == nil && !q.stopped {
		q.changed.Wait()
	}
	if n := q.owedCount(); n > 0 {
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
		j := q.jobs[p]
		j.queued = false
		jobCtx, cancel := context.WithCancel(ctx)
		j.cancel = cancel
		q.mu.Unlock()

		again, err := q.c.uploader.syncPath(jobCtx, p)
		cancelled := jobCtx.Err() != nil
		cancel()

		q.mu.Lock()
		j.cancel = nil
		rerun := j.again
		j.again = false
		switch {
		case q.stopped:
		case err != nil && !cancelled:
			j.lastErr = err
			q.scheduleRetry(p, j, err)
		case err != nil || again || rerun:
			// Cancelled by a newer change, or the index moved on while
			// the request ran: look again at once.
			q.enqueue(p)
		default:
			j.lastErr, j.backoff, j.reported, j.failures = nil, nil, "", 0
			if !j.owed() {
				delete(q.jobs, p) // done
			} else {
				j.since = time.Now() // a delay set meanwhile: owed anew
			}
		}
		q.changed.Broadcast()
		q.mu.Unlock()
		q.finished.Broadcast()
	}
}

// failure returns the error of p's last job if it failed.
func (q *queue) failure(p string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if j := q.jobs[p]; j != nil {
		return j.lastErr
	}
	return nil
}

// depth returns how many paths are owed and how long the oldest has waited.
func (q *queue) depth() (int, time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var oldest time.Time
	for _, j := range q.jobs {
		if j.owed() && (oldest.IsZero() || j.since.Before(oldest)) {
			oldest = j.since
		}
	}
	if oldest.IsZero() {
		return q.owedCount(), 0
	}
	return q.owedCount(), time.Since(oldest)
}

// scheduleRetry re-runs p after a capped, jittered exponential delay.
// q.mu is held.
func (q *queue) scheduleRetry(p string, j *job, err error) {
	q.c.stats.storeError(err, isPermanent(err))
	b := j.backoff
	if b == nil {
		b = q.owedBackOff()
		j.backoff = b
	}
	delay := b.NextBackOff()
	if delay < 0 || delay > q.c.opts.RetryMax {
		delay = q.c.opts.RetryMax
	}
	if isPermanent(err) {
		// Logged once per path and reason; retried anyway, so fixing the
		// bucket policy or credentials heals the queue without a restart.
		if j.reported != err.Error() {
			j.reported = err.Error()
			q.c.log.Error("store refused a request; will keep retrying", "path", p, "err", err, "retry_in", delay)
		}
	} else if n := j.failures + 1; n&(n-1) == 0 {
		// Warn at the 1st, 2nd, 4th, 8th… failure: an outage is visible
		// without a line per file per retry.
		q.c.log.Warn("store request failed; will retry", "path", p, "failures", n, "err", err, "retry_in", delay)
	}
	j.failures++
	q.enqueueAfter(p, delay)
}
