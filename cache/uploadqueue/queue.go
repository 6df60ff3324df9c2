// Package uploadqueue is the in-memory schedule of the cache's owed work:
// the paths whose store object must be brought in line with the index (an
// upload for a dirty file, a delete for a tombstone, a move, a metadata
// copy). A job names a path, not an operation, and the Sync function reads
// what is owed when it runs; at most one job per path is in flight, so a
// PUT and a DELETE of one key never race and the index's newest state
// always wins. A failed job is retried forever, per path, with a capped,
// jittered exponential backoff, so that fixing a bucket policy heals the
// queue without a restart.
//
// The durable queue is the index's pending markers (package cache); what
// is lost with this schedule at a stop is found there at the next start.
package uploadqueue

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Options configures a Queue.
type Options struct {
	// Sync brings p's object in line with the index. again asks for
	// another run at once (the index moved on meanwhile).
	Sync func(ctx context.Context, p string) (again bool, err error)
	// RetryMin and RetryMax bound a failed path's retry delay.
	RetryMin, RetryMax time.Duration
	// IsPermanent tells an error retrying alone cannot cure (logged once
	// per path and reason).
	IsPermanent func(error) bool
	// Failed is told of every failed job; Finished after every job ends.
	Failed   func(err error, permanent bool)
	Finished func()
	Log      *slog.Logger
}

// ErrStopped is Drain's answer when the queue stopped with work owed.
var ErrStopped = errors.New("upload queue stopped")

// Queue is the schedule. Its methods are safe for concurrent use.
type Queue struct {
	o Options

	mu       sync.Mutex // guards every field below
	changed  *sync.Cond // signalled when work is added or finishes
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

// New returns a stopped queue; Start runs it.
func New(o Options) *Queue {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.IsPermanent == nil {
		o.IsPermanent = func(error) bool { return false }
	}
	q := &Queue{o: o, jobs: map[string]*job{}}
	q.changed = sync.NewCond(&q.mu)
	return q
}

// jobOf returns p's job, making it if p has none. q.mu is held.
func (q *Queue) jobOf(p string) *job {
	j := q.jobs[p]
	if j == nil {
		j = &job{since: time.Now()}
		q.jobs[p] = j
	}
	return j
}

// Start runs the queue with workers until ctx ends.
func (q *Queue) Start(ctx context.Context, workers int) {
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

// SetScanning marks the start-up scan of owed work as running or done;
// Drain waits for it, so nothing owed is missed.
func (q *Queue) SetScanning(on bool) {
	q.mu.Lock()
	q.scanning = on
	q.changed.Broadcast()
	q.mu.Unlock()
}

// Wait blocks until every worker has returned.
func (q *Queue) Wait() { q.workers.Wait() }

// Add schedules p now, cancelling a pending retry delay: new work for a path
// deserves a fresh attempt.
func (q *Queue) Add(p string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.enqueue(p)
}

// enqueue is Add with q.mu held.
func (q *Queue) enqueue(p string) {
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

// AddAfter schedules p once d has passed. Until then p counts as owed, as
// a retry does, so drain waits for it.
func (q *Queue) AddAfter(p string, d time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.stopped {
		q.enqueueAfter(p, d)
	}
}

// enqueueAfter is AddAfter with q.mu held.
func (q *Queue) enqueueAfter(p string, d time.Duration) {
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

// Supersede marks the in-flight job for p, if any, as out of date: it is
// run again once it ends. It is deliberately not cancelled: a request
// already on the wire may still be carried out by the store after we give
// up on it, and then land after the request that was meant to follow it
// (a stale PUT over a newer one, a DELETE over a re-created file).
// Letting it finish keeps the store's order the index's order.
func (q *Queue) Supersede(p string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if j := q.jobs[p]; j != nil && j.cancel != nil {
		j.again = true
	}
}

// owedCount counts paths queued, in flight or waiting to retry. q.mu is
// held.
func (q *Queue) owedCount() int {
	n := 0
	if q.scanning {
		n++
	}
	for _, j := range q.jobs {
		// A job goes only when its work succeeds: once the queue has
		// stopped, every job left is work still owed, even one whose
		// worker gave up on it.
		if j.owed() || q.stopped {
			n++
		}
	}
	return n
}

// Drain waits until nothing is owed or ctx ends, returning what is left.
func (q *Queue) Drain(ctx context.Context) (int, error) {
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
		return n, ErrStopped
	}
	return 0, nil
}

func (q *Queue) work(ctx context.Context) {
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

		again, err := q.o.Sync(jobCtx, p)
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
		if q.o.Finished != nil {
			q.o.Finished()
		}
	}
}

// Failure returns the error of p's last job if it failed.
func (q *Queue) Failure(p string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if j := q.jobs[p]; j != nil {
		return j.lastErr
	}
	return nil
}

// Depth returns how many paths are owed and how long the oldest has waited.
func (q *Queue) Depth() (int, time.Duration) {
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
func (q *Queue) scheduleRetry(p string, j *job, err error) {
	perm := q.o.IsPermanent(err)
	if q.o.Failed != nil {
		q.o.Failed(err, perm)
	}
	b := j.backoff
	if b == nil {
		b = q.owedBackOff()
		j.backoff = b
	}
	delay := b.NextBackOff()
	if delay < 0 || delay > q.o.RetryMax {
		delay = q.o.RetryMax
	}
	if perm {
		// Logged once per path and reason; retried anyway, so fixing the
		// bucket policy or credentials heals the queue without a restart.
		if j.reported != err.Error() {
			j.reported = err.Error()
			q.o.Log.Error("store refused a request; will keep retrying", "path", p, "err", err, "retry_in", delay)
		}
	} else if n := j.failures + 1; n&(n-1) == 0 {
		// Warn at the 1st, 2nd, 4th, 8th… failure: an outage is visible
		// without a line per file per retry.
		q.o.Log.Warn("store request failed; will retry", "path", p, "failures", n, "err", err, "retry_in", delay)
	}
	j.failures++
	q.enqueueAfter(p, delay)
}

// owedBackOff is the delay policy of one path's owed work.
func (q *Queue) owedBackOff() *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = q.o.RetryMin
	b.MaxInterval = q.o.RetryMax
	return b
}
