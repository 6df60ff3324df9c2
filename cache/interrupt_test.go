// An interrupted lookup, readdir or rmdir answers EINTR, never absence or
// a partial listing.

package cache

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// interrupter is a store whose next LIST after arm cancels the armed
// context while in flight, as the kernel's FUSE_INTERRUPT does when the
// calling thread takes a signal (SIGCHLD, Go's preemption SIGURG…). The
// LIST fails only if its own context was the caller's.
type interrupter struct {
	*objstore.Faulty
	mu     sync.Mutex
	cancel context.CancelFunc
}

func newInterrupter(mem *objstore.Mem) *interrupter {
	i := &interrupter{}
	i.Faulty = &objstore.Faulty{Store: mem, BeforeList: func(ctx context.Context, _ string) error {
		i.mu.Lock()
		cancel := i.cancel
		i.cancel = nil
		i.mu.Unlock()
		if cancel == nil {
			return nil
		}
		cancel()
		// The request itself carries on: the store answers a little
		// after the caller has given up.
		time.Sleep(50 * time.Millisecond)
		return ctx.Err()
	}}
	return i
}

func (i *interrupter) arm() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	i.mu.Lock()
	i.cancel = cancel
	i.mu.Unlock()
	return ctx
}

// A lookup interrupted by a signal is not an answer: the caller hears it
// was interrupted (EINTR, which open and stat callers retry), never that
// an existing file is absent, and nothing negative is remembered.
func TestInterruptedLookupIsNotAbsence(t *testing.T) {
	mem := objstore.NewMem()
	mem.SetObject("local_content/ab/cd/media", []byte("12345"))
	store := newInterrupter(mem)
	c := openTest(t, t.TempDir(), store, nil)

	if _, err := c.Stat(store.arm(), "local_content"); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted lookup: %v, want context.Canceled", err)
	}
	// The kernel retries the walk, one name at a time.
	for _, p := range []string{"local_content", "local_content/ab", "local_content/ab/cd"} {
		if a, err := c.Stat(context.Background(), p); err != nil || !a.Dir {
			t.Fatalf("%s after the interruption: %+v %v, want a directory", p, a, err)
		}
	}
	if a, err := c.Stat(context.Background(), "local_content/ab/cd/media"); err != nil || a.Size != 5 {
		t.Fatalf("after the interruption: %+v %v, want the file", a, err)
	}
}

// A listing interrupted by a signal fails as interrupted rather than
// passing off the index's part of the directory as all of it.
func TestInterruptedReaddirIsNotPartial(t *testing.T) {
	mem := objstore.NewMem()
	mem.SetObject("d/in-store", []byte("x"))
	store := newInterrupter(mem)
	c := openTest(t, t.TempDir(), store, nil)
	if _, err := c.Stat(context.Background(), "d"); err != nil {
		t.Fatal(err)
	}
	if ents, err := c.Readdir(store.arm(), "d"); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted readdir: %v %v, want context.Canceled", ents, err)
	}
	if ents, err := c.Readdir(context.Background(), "d"); err != nil || len(ents) != 1 {
		t.Fatalf("readdir retried: %v %v, want in-store", ents, err)
	}
}

// rmdir(2) has no EINTR to give, and Synapse's tidy-up does not retry
// one: an rmdir whose store check is interrupted still gets its answer.
func TestInterruptedRmdirStillAnswers(t *testing.T) {
	mem := objstore.NewMem()
	store := newInterrupter(mem)
	c := openTest(t, t.TempDir(), store, nil)
	if _, err := c.Mkdir(context.Background(), "empty", NewFile{Mode: 0o755}); err != nil {
		t.Fatal(err)
	}
	if err := c.Rmdir(store.arm(), "empty"); err != nil {
		t.Fatalf("interrupted rmdir: %v, want it done", err)
	}
	if _, err := c.Stat(context.Background(), "empty"); !errors.Is(err, ErrNotExist) {
		t.Fatalf("after rmdir: %v, want ErrNotExist", err)
	}
}
