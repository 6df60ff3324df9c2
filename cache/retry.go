package cache

import (
	"context"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// The retry policy, in one place. Under it, the AWS SDK retries each
// request itself (its standard retryer: a few attempts on throttling, 5xx
// and broken connections). On top, the cache retries at two speeds:
//
//   - Now, for what a caller waits on (a lookup of an unknown name, a
//     fetch whose body ended early, a read served from the store): at most
//     retryNowAttempts attempts, 100 ms then 200 ms apart, each bounded by
//     its own deadline (lookup_timeout, store_timeout). Then the caller
//     gets its answer: "absent" for a lookup, EIO for a read.
//   - Owed, for work the index keeps until it is done (uploads, deletes,
//     moves, metadata copies): forever, RetryMin doubling to RetryMax with
//     jitter, per path (package uploadqueue), so that fixing a bucket
//     policy heals the queue without a restart.
//
// While the store is known to be down (health.go), lookups do not wait for
// it at all, and one probe every 2 s finds it again.
const retryNowAttempts = 3

// tries counts the attempts of a request a caller waits on:
//
//	for t := newTries(); t.next(ctx); { … }
type tries struct {
	n int
	b *backoff.ExponentialBackOff
}

func newTries() *tries {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 100 * time.Millisecond
	b.Multiplier = 2
	b.RandomizationFactor = 0
	return &tries{b: b}
}

// next reports whether another attempt may be made, after waiting the
// policy's delay (none before the first). It is false once the attempts
// are spent or ctx has ended.
func (t *tries) next(ctx context.Context) bool {
	if t.n >= retryNowAttempts || ctx.Err() != nil {
		return false
	}
	if t.n > 0 {
		timer := time.NewTimer(t.b.NextBackOff())
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-ctx.Done():
			return false
		}
	}
	t.n++
	return true
}
