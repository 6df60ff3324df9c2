// A signal during a lookup is not absence.

package fs

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/cache"
	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// A process that takes signals while it waits for a store lookup (Go's
// preemption SIGURG, a Python process's SIGCHLD) makes the kernel send
// FUSE_INTERRUPT. The lookup then ends as interrupted (EINTR, which stat
// and open retry), never as "no such file" for a file the store has.
func TestSignalDuringLookupIsNotAbsence(t *testing.T) {
	mem := objstore.NewMem()
	mem.SetObject("local_content/ab/cd/media", []byte("12345"))
	slow := &objstore.Faulty{Store: mem, BeforeList: func(ctx context.Context, _ string) error {
		select {
		case <-time.After(300 * time.Millisecond):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}}
	var interrupted atomic.Int32
	mnt, _, _ := testMountWith(t, cache.Options{Store: slow}, Options{Passthrough: true,
		Observe: func(op string, _ time.Duration, errno syscall.Errno) {
			if op == "lookup" && errno == syscall.EINTR {
				interrupted.Add(1)
			}
		}})

	tid := make(chan int, 1)
	done := make(chan error, 1)
	go func() {
		// The signals go to this thread, the one waiting in the kernel.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tid <- syscall.Gettid()
		fi, err := os.Stat(filepath.Join(mnt, "local_content/ab/cd/media"))
		if err == nil && fi.Size() != 5 {
			err = os.ErrInvalid
		}
		done <- err
	}()
	target := <-tid
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("stat while signalled: %v, want the file", err)
			}
			if interrupted.Load() == 0 {
				t.Fatal("no lookup was interrupted; the test proved nothing")
			}
			return
		case <-tick.C:
			// SIGURG: Go's runtime handles it and carries on.
			_ = syscall.Tgkill(os.Getpid(), target, syscall.SIGURG)
		case <-deadline:
			t.Fatal("stat did not finish while signalled")
		}
	}
}
