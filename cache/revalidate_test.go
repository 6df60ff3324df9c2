// Revalidation of clean files runs behind the lookup.

package cache

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// slowHead holds every HEAD until release is closed.
type slowHead struct {
	*objstore.Mem
	release chan struct{}
}

func (s *slowHead) Head(ctx context.Context, key string) (objstore.Object, error) {
	select {
	case <-s.release:
	case <-ctx.Done():
		return objstore.Object{}, ctx.Err()
	}
	return s.Mem.Head(ctx, key)
}

// A lookup of a cached file due for revalidation is answered from the
// index without waiting for the store (a warm hit costs no round trip);
// the HEAD runs behind it, and a delete by another host shows at the
// lookups after. With RevalidateWaits the lookup waits, as before.
func TestRevalidationRunsBehindTheLookup(t *testing.T) {
	for _, waits := range []bool{false, true} {
		mem := objstore.NewMem()
		store := &slowHead{Mem: mem, release: make(chan struct{})}
		c := openWith(t, Options{Store: store, RevalidateAfter: 10 * time.Millisecond, RevalidateWaits: waits, StoreTimeout: 5 * time.Second})
		ctx := context.Background()
		writeFile(t, c, "m/f", []byte("media"))
		drainTest(t, c)
		mem.Delete(ctx, "m/f") // another host
		time.Sleep(20 * time.Millisecond)
		answered := make(chan error, 1)
		go func() {
			_, err := c.Stat(ctx, "m/f")
			answered <- err
		}()
		select {
		case err := <-answered:
			if waits {
				t.Fatalf("waits: the lookup did not wait for the HEAD (%v)", err)
			}
			if err != nil {
				t.Fatalf("the lookup of a cached file: %v", err)
			}
		case <-time.After(500 * time.Millisecond):
			if !waits {
				t.Fatal("the lookup waited for the store")
			}
		}
		close(store.release)
		if waits {
			if err := <-answered; !errors.Is(err, ErrNotExist) {
				t.Fatalf("waits: %v, want absent", err)
			}
			continue
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			if _, err := c.Stat(ctx, "m/f"); errors.Is(err, ErrNotExist) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("another host's delete never showed")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}
