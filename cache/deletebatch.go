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
// joins the keys waiting; when no request is out, a sender starts, lets
// the batch gather for up to gatherWindow or until every upload worker has
// a key in it (full), sends it, up to objstore.MaxDeleteBatch keys, and
// goes on while more arrives. A purge's deletes thus go several to a
// request even from a store that answers in a millisecond, and deletes
// wait at most gatherWindow more: they are owed work, which no caller of
// the filesystem waits for. Each waiter gets its own key's answer, so a
// key the store refused stays owed and is retried on its own.
//
// A store without DeleteObjects (no BatchDeleter, or one that answers it
// is not implemented, found once) is sent one DELETE a key.
type deleteBatches struct {
	store   objstore.Store
	batches objstore.BatchDeleter // nil: one DELETE a key
	timeout time.Duration         // bounds one request
	full    int                   // keys that fill a batch: one per upload worker
	// start runs the sender in the cache's lifetime; false once the
	// cache is closing.
	start func(func(ctx context.Context)) bool
	log   *slog.Logger

	oneByOne atomic.Bool   // the store said it has no DeleteObjects
	requests atomic.Uint64 // DeleteObjects requests sent, for stats

	mu      sync.Mutex
	waiting []*pendingDelete // keys for the next request, in arrival order
	sending bool             // a sender is running
	arrived chan struct{}    // a key joined waiting (capacity 1: a wake-up)
}

// gatherWindow is how long a batch may gather after its first key.
const gatherWindow = 10 * time.Millisecond

// pendingDelete is one key waiting in a batch, and its answer.
type pendingDelete struct {
	key  string
	done chan error // buffered: a waiter that gave up leaves its answer behind
}

// errSendAlone tells a waiter to delete its key with a DELETE of its own:
// the store turned out to have no DeleteObjects.
var errSendAlone = errors.New("delete the key alone")

func newDeleteBatches(store objstore.Store, oneByOne bool, timeout time.Duration, workers int,
	start func(func(ctx context.Context)) bool, log *slog.Logger) *deleteBatches {
	b := &deleteBatches{store: store, timeout: timeout, full: max(workers, 1), start: start, log: log,
		arrived: make(chan struct{}, 1)}
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
	select {
	case b.arrived <- struct{}{}:
	default:
	}
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
		b.gather(life)
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

// gather waits until the batch is full or gatherWindow has passed.
func (b *deleteBatches) gather(life context.Context) {
	window := time.NewTimer(gatherWindow)
	defer window.Stop()
	for {
		b.mu.Lock()
		n := len(b.waiting)
		b.mu.Unlock()
		if n == 0 || n >= b.full || n >= objstore.MaxDeleteBatch {
			return
		}
		select {
		case <-b.arrived:
		case <-window.C:
			return
		case <-life.Done():
			return
		}
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
