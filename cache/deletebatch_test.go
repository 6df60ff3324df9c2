package cache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// batchCounting is an in-memory store that counts its delete requests.
// Each DeleteObjects takes a while, as over a network, so that deletes
// reached meanwhile can gather; refuse fails single keys in it, and
// unsupported makes it answer as a store without DeleteObjects.
type batchCounting struct {
	*objstore.Mem
	latency     time.Duration // of each DeleteObjects
	mu          sync.Mutex
	batches     []int // keys per DeleteObjects request
	singles     int
	refuse      map[string]bool
	unsupported bool
}

func (b *batchCounting) DeleteMany(ctx context.Context, keys []string) (map[string]error, error) {
	time.Sleep(b.latency)
	b.mu.Lock()
	b.batches = append(b.batches, len(keys))
	unsupported := b.unsupported
	var failed map[string]error
	var rest []string
	for _, k := range keys {
		if b.refuse[k] {
			if failed == nil {
				failed = map[string]error{}
			}
			failed[k] = objstore.Denied("delete", k)
		} else {
			rest = append(rest, k)
		}
	}
	b.mu.Unlock()
	if unsupported {
		return nil, fmt.Errorf("delete_objects: %w", errors.ErrUnsupported)
	}
	if _, err := b.Mem.DeleteMany(ctx, rest); err != nil {
		return nil, err
	}
	return failed, nil
}

func (b *batchCounting) Delete(ctx context.Context, key string) error {
	b.mu.Lock()
	b.singles++
	b.mu.Unlock()
	return b.Mem.Delete(ctx, key)
}

func (b *batchCounting) counts() (batches []int, singles int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]int(nil), b.batches...), b.singles
}

// writeAndRemove writes n media files, waits for their uploads, and
// unlinks them all, as a purge does.
func writeAndRemove(t *testing.T, c *Cache, n int) []string {
	t.Helper()
	var paths []string
	for i := range n {
		p := fmt.Sprintf("local_content/%02x/%02x/media%d", i%7, i%5, i)
		writeFile(t, c, p, []byte(p))
		paths = append(paths, p)
	}
	drainTest(t, c)
	for _, p := range paths {
		if err := c.Unlink(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	return paths
}

func TestOwedDeletesGoInBatches(t *testing.T) {
	for _, latency := range []time.Duration{0, 20 * time.Millisecond} {
		t.Run(latency.String(), func(t *testing.T) { testOwedDeletesGoInBatches(t, latency) })
	}
}

func testOwedDeletesGoInBatches(t *testing.T, latency time.Duration) {
	store := &batchCounting{Mem: objstore.NewMem(), latency: latency}
	c := openTest(t, t.TempDir(), store, nil)
	const n = 120
	writeAndRemove(t, c, n)
	drainTest(t, c)
	if keys := store.Keys(); len(keys) != 0 {
		t.Fatalf("left in the store after the purge: %v", keys)
	}
	batches, singles := store.counts()
	sent := 0
	for _, k := range batches {
		sent += k
	}
	if singles != 0 || sent < n {
		t.Errorf("%d single DELETEs, %d keys in batches: want none, and at least %d", singles, sent, n)
	}
	// A purge's deletes go several to a request, not one, whether the
	// store answers at once or takes a while.
	if len(batches) > n/2 {
		t.Errorf("%d DeleteObjects requests for %d deletes (%v): not batched", len(batches), sent, batches)
	}
	if st := c.Status(); st.DeleteBatches != uint64(len(batches)) || st.Deletes < n {
		t.Errorf("status: %d batches, %d deletes; want %d, ≥ %d", st.DeleteBatches, st.Deletes, len(batches), n)
	}
}

// TestRefusedKeyInABatchStaysOwed: the key the store refused in a batch
// stays owed and is retried until it goes; the others of its batch are
// done.
func TestRefusedKeyInABatchStaysOwed(t *testing.T) {
	store := &batchCounting{Mem: objstore.NewMem(), latency: 20 * time.Millisecond, refuse: map[string]bool{}}
	c := openTest(t, t.TempDir(), store, nil)
	writeFile(t, c, "a/keep-trying", []byte("x"))
	writeFile(t, c, "a/other", []byte("y"))
	drainTest(t, c)
	store.mu.Lock()
	store.refuse["a/keep-trying"] = true
	store.mu.Unlock()
	for _, p := range []string{"a/keep-trying", "a/other"} {
		if err := c.Unlink(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if n, err := c.Drain(ctx); n == 0 || err == nil {
		t.Fatalf("drain with a refused key: %d owed, %v; want it owed", n, err)
	}
	if got := strings.Join(store.Keys(), " "); got != "a/keep-trying" {
		t.Fatalf("store holds %q, want only the refused key", got)
	}
	store.mu.Lock()
	store.refuse = nil
	store.mu.Unlock()
	drainTest(t, c)
	if keys := store.Keys(); len(keys) != 0 {
		t.Errorf("left after the store took the delete: %v", keys)
	}
}

// TestStoreWithoutDeleteObjects: the first batch a store says it cannot
// take turns the cache to one DELETE a key, for good: nothing is lost,
// and DeleteObjects is not tried again.
func TestStoreWithoutDeleteObjects(t *testing.T) {
	store := &batchCounting{Mem: objstore.NewMem(), unsupported: true}
	c := openTest(t, t.TempDir(), store, nil)
	const n = 40
	writeAndRemove(t, c, n)
	drainTest(t, c)
	writeAndRemove(t, c, n)
	drainTest(t, c)
	if keys := store.Keys(); len(keys) != 0 {
		t.Fatalf("left in the store: %v", keys)
	}
	batches, singles := store.counts()
	if len(batches) != 1 || singles < 2*n {
		t.Errorf("%d DeleteObjects tries, %d DELETEs: want 1 try, then ≥ %d DELETEs", len(batches), singles, 2*n)
	}
}

// TestDeleteOneByOne: batching turned off sends no DeleteObjects at all.
func TestDeleteOneByOne(t *testing.T) {
	store := &batchCounting{Mem: objstore.NewMem()}
	c, err := Open(Options{Dir: t.TempDir(), Store: store, DeleteOneByOne: true})
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	t.Cleanup(func() { c.Close() })
	writeAndRemove(t, c, 10)
	drainTest(t, c)
	if batches, singles := store.counts(); len(batches) != 0 || singles < 10 || len(store.Keys()) != 0 {
		t.Errorf("one by one: %d batches, %d DELETEs, %d keys left", len(batches), singles, len(store.Keys()))
	}
}
