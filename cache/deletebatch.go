package cache

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// deleteBatches sends the owed deletes that upload workers reach at about
// the same time as one DeleteObjects request (a group commit). A delete
// joins the keys waiting; when no request is out, a sender starts and
// sends what is waiting, up to objstore.MaxDeleteBatch keys a request, and
// goes on while more arrives. Nothing waits for a batch to fill: an idle
// store gets the first delete at once, and a purge's deletes gather while
// one request is answered. Each waiter gets its own key's answer, so a key
// the store refused stays owed and is retried on its own.
//
// A store without DeleteObjects (no BatchDeleter, or one that answers it
// is not implemented, found once) is sent one DELETE a key.
type deleteBatches struct {
	store   objstore.Store
	batches objstore.BatchDeleter // nil: one DELETE a key
	timeout time.Duration         // bounds one request
	// start runs the sender in the cache's lifetime; false once the
	// cache is closing.
	start func(func(ctx context.Context)) bool
	log   *slog.Logger

	oneByOne atomic.Bool   // the store said it has no DeleteObjects
	requests atomic.Uint64 // DeleteObjects requests sent, for stats

	mu      sync.Mutex
	waiting []*pendingDelete // keys for the next request, in arrival order
	sending bool             // a sender is running
}

// pendingDelete is one key waiting in a batch, and its answer.
type pendingDelete struct {
	key  string
	done chan error // buffered: a waiter that gave up leaves its answer behind
}

// errSendAlone tells a waiter to delete its key with a DELETE of its own:
// the store turned out to have no DeleteObjects.
var errSendAlone = errors.New("delete the key alone")

func newDeleteBatches(store objstore.Store, oneByOne bool, timeout time.Duration,
	start func(func(ctx context.Context)) bool, log *slog.Logger) *deleteBatches {
	b := &deleteBatches{store: store, timeout: timeout, start: start, log: log}
	if bd, ok := store.(objstore.BatchDeleter); ok && !oneByOne {
		b.batches = bd
	}
	return b
}

// delete deletes key from the store; a key that was not there counts as
// deleted.
func (b *deleteBatches) delete(ctx context.Context, key string) error {
	if b.batches == nil || b.oneByOne.Load() {
		return b.deleteAlone(ctx, key)
	}
	d := &pendingDelete{key: key, done: make(chan error, 1)}
	b.mu.Lock()
	b.waiting = append(b.waiting, d)
	if !b.sending {
		if !b.start(b.send) {
			b.waiting = b.waiting[:len(b.waiting)-1]
			b.mu.Unlock()
			return ErrClosed
		}
		b.sending = true
	}
	b.mu.Unlock()
	select {
	case err := <-d.done:
		if errors.Is(err, errSendAlone) {
			return b.deleteAlone(ctx, key)
		}
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *deleteBatches) deleteAlone(ctx context.Context, key string) error {
	if err := b.store.Delete(ctx, key); err != nil && !isNotFound(err) {
		return err
	}
	return nil
}

// send sends the waiting keys, a batch a request, until none is left.
func (b *deleteBatches) send(life context.Context) {
	for {
		b.mu.Lock()
		n := min(len(b.waiting), objstore.MaxDeleteBatch)
		if n == 0 {
			b.sending = false
			b.mu.Unlock()
			return
		}
		batch := make([]*pendingDelete, n)
		copy(batch, b.waiting)
		b.waiting = append(b.waiting[:0], b.waiting[n:]...)
		b.mu.Unlock()
		b.sendBatch(life, batch)
	}
}

// sendBatch sends one DeleteObjects request and answers its waiters.
func (b *deleteBatches) sendBatch(life context.Context, batch []*pendingDelete) {
	if b.oneByOne.Load() {
		for _, d := range batch {
			d.done <- errSendAlone
		}
		return
	}
	keys := make([]string, len(batch))
	for i, d := range batch {
		keys[i] = d.key
	}
	ctx, cancel := context.WithTimeout(life, b.timeout)
	defer cancel()
	b.requests.Add(1)
	failed, err := b.batches.DeleteMany(ctx, keys)
	if errors.Is(err, errors.ErrUnsupported) {
		if !b.oneByOne.Swap(true) {
			b.log.Info("the store has no DeleteObjects; deleting one key a request", "err", err)
		}
		err = errSendAlone
	}
	for _, d := range batch {
		if err != nil {
			d.done <- err
		} else {
			d.done <- failed[d.key]
		}
	}
}
