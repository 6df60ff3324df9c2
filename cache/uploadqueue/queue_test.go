// The upload queue: one job per path at a time, retries until success,
// drain after stop.

package uploadqueue

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func started(t *testing.T, o Options, workers int) *Queue {
	t.Helper()
	if o.RetryMin == 0 {
		o.RetryMin, o.RetryMax = time.Millisecond, 10*time.Millisecond
	}
	q := New(o)
	ctx, cancel := context.WithCancel(context.Background())
	q.Start(ctx, workers)
	t.Cleanup(func() { cancel(); q.Wait() })
	return q
}

func drained(t *testing.T, q *Queue) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if n, err := q.Drain(ctx); err != nil {
		t.Fatalf("drain: %d owed: %v", n, err)
	}
}

// One path never runs twice at once, however often it is added, and an
// addition while it runs makes it run once more afterwards.
func TestOnePathOneJobAtATime(t *testing.T) {
	var running, most, runs atomic.Int32
	release := make(chan struct{})
	q := started(t, Options{Sync: func(ctx context.Context, p string) (bool, error) {
		n := running.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		if runs.Add(1) == 1 {
			<-release
		}
		running.Add(-1)
		return false, nil
	}}, 4)
	q.Add("a")
	for running.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	for range 10 {
		q.Add("a")
	}
	close(release)
	drained(t, q)
	if most.Load() != 1 || runs.Load() != 2 {
		t.Errorf("at most %d at once, %d runs; want 1 at once and 2 runs", most.Load(), runs.Load())
	}
}

// A failed path is retried until it succeeds; its error is reported
// meanwhile, and forgotten once it succeeds.
func TestRetriedUntilItSucceeds(t *testing.T) {
	var tries atomic.Int32
	var failed atomic.Int32
	fail := errors.New("503")
	var seen sync.Map
	q := started(t, Options{
		Sync: func(ctx context.Context, p string) (bool, error) {
			if tries.Add(1) < 4 {
				return false, fail
			}
			return false, nil
		},
		Failed: func(err error, permanent bool) { failed.Add(1); seen.Store("err", err) },
	}, 1)
	q.Add("a")
	drained(t, q)
	if tries.Load() != 4 || failed.Load() != 3 {
		t.Errorf("%d tries, %d failures reported; want 4 and 3", tries.Load(), failed.Load())
	}
	if err := q.Failure("a"); err != nil {
		t.Errorf("failure after success: %v", err)
	}
	if n, _ := q.Depth(); n != 0 {
		t.Errorf("depth after success: %d", n)
	}
}

// A stop with work owed is ErrStopped for whoever drains.
func TestDrainAfterStop(t *testing.T) {
	q := New(Options{Sync: func(ctx context.Context, p string) (bool, error) {
		<-ctx.Done()
		return false, ctx.Err()
	}, RetryMin: time.Millisecond, RetryMax: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	q.Start(ctx, 1)
	q.Add("a")
	time.AfterFunc(20*time.Millisecond, cancel)
	n, err := q.Drain(context.Background())
	q.Wait()
	if n != 1 || !errors.Is(err, ErrStopped) {
		t.Errorf("drain after stop: %d, %v; want 1 owed and ErrStopped", n, err)
	}
}

// AddAfter holds a path back, and it counts as owed meanwhile.
func TestAddAfterIsOwed(t *testing.T) {
	var ran atomic.Int32
	q := started(t, Options{Sync: func(ctx context.Context, p string) (bool, error) {
		ran.Add(1)
		return false, nil
	}}, 1)
	q.AddAfter("a", 50*time.Millisecond)
	if n, _ := q.Depth(); n != 1 || ran.Load() != 0 {
		t.Fatalf("before the delay: depth %d, ran %d", n, ran.Load())
	}
	drained(t, q)
	if ran.Load() != 1 {
		t.Errorf("ran %d times", ran.Load())
	}
}
