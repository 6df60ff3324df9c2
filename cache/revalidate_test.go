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

// headThen is a store whose HEAD, once armed, runs then before it
// returns: what the HEAD answered is older than what then changes.
type headThen struct {
	objstore.Store
	then func()
}

func (s *headThen) Head(ctx context.Context, key string) (objstore.Object, error) {
	o, err := s.Store.Head(ctx, key)
	if f := s.then; f != nil {
		s.then = nil
		f()
	}
	return o, err
}

// A revalidation's answer describes the store when it was asked. If this
// host wrote and uploaded the file again before that answer is
// processed, the answer is about the version before (a restart met this:
// the HEAD saw the truncated version of a rewrite, and the answer,
// processed after the whole file's upload, dropped the local copy and
// showed the file empty for seconds). It must change nothing: the same
// for an object found changed as for one found gone.
func TestRevalidationKeepsAVersionNewerThanItsQuestion(t *testing.T) {
	for _, gone := range []bool{false, true} {
		mem := objstore.NewMem()
		store := &headThen{Store: mem}
		c := openWith(t, Options{Store: store, RevalidateAfter: time.Hour, StoreTimeout: 5 * time.Second})
		ctx := context.Background()
		writeFile(t, c, "m/f", []byte("the first version"))
		drainTest(t, c)
		asked, _, err := c.readRecord("m/f")
		if err != nil {
			t.Fatal(err)
		}
		if gone {
			mem.Delete(ctx, "m/f")
		} else {
			mem.SetObject("m/f", []byte("old")) // what the HEAD is to see
		}
		store.then = func() {
			writeFile(t, c, "m/f", []byte("the second, written here"))
			drainTest(t, c)
		}
		if _, err := c.revalidate(ctx, "m/f", asked); err != nil && !gone {
			t.Fatal(err)
		}
		r, ok, err := c.readRecord("m/f")
		if err != nil || !ok || r.State != Clean || r.Size != int64(len("the second, written here")) {
			t.Fatalf("gone %v: after the late answer the record is %+v (found %v, %v); want the second version, clean", gone, r, ok, err)
		}
		if got := readFile(t, c, "m/f"); string(got) != "the second, written here" {
			t.Errorf("gone %v: read %q", gone, got)
		}
	}
}
