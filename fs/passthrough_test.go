package fs

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/cache"
	"github.com/s3mediafs/s3mediafs/s3"
)

// opCounter counts the FUSE operations the daemon serves.
type opCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (o *opCounter) observe(op string, _ time.Duration, _ syscall.Errno) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n == nil {
		o.n = map[string]int{}
	}
	o.n[op]++
}

func (o *opCounter) count(op string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n[op]
}

// Under passthrough the kernel reads and writes the cache's data files
// itself: the daemon sees opens and closes but no read or write, and
// what was written still reaches the store, fetched files included.
func TestPassthroughBypassesDaemon(t *testing.T) {
	store := s3.NewMem()
	var ops opCounter
	mnt, c, _ := testMountWith(t, cache.Options{Store: store}, Options{Passthrough: true, Observe: ops.observe})
	data := payload(300_000, 5)
	synapseWrite(t, filepath.Join(mnt, "local_content/ab/cd/media"), data)
	store.SetObject("remote_content/x/y/z", payload(70_000, 6))
	got, err := os.ReadFile(filepath.Join(mnt, "remote_content/x/y/z"))
	if err != nil || !bytes.Equal(got, payload(70_000, 6)) {
		t.Fatalf("read-through: %d bytes, %v", len(got), err)
	}
	if r, w := ops.count("read"), ops.count("write"); r != 0 || w != 0 {
		t.Errorf("daemon served %d reads and %d writes; passthrough should have served them all", r, w)
	}
	drain(t, c)
	if got, _ := store.Object("local_content/ab/cd/media"); !bytes.Equal(got, data) {
		t.Fatalf("store has %d bytes, want the %d written", len(got), len(data))
	}
}

// Writes the daemon never sees must still be recorded by every flush,
// even a same-size overwrite after an earlier close of a duplicate.
func TestPassthroughWritesAfterAFlushAreStored(t *testing.T) {
	store := s3.NewMem()
	mnt, c, _ := testMountWith(t, cache.Options{Store: store}, Options{Passthrough: true})
	p := filepath.Join(mnt, "f")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("first version")); err != nil {
		t.Fatal(err)
	}
	dup, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Close(dup); err != nil { // a flush, as close(2) of any descriptor sends
		t.Fatal(err)
	}
	drain(t, c)
	if got, _ := store.Object("f"); string(got) != "first version" {
		t.Fatalf("after the first flush the store has %q", got)
	}
	if _, err := f.WriteAt([]byte("FIRST"), 0); err != nil { // same size
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	drain(t, c)
	if got, _ := store.Object("f"); string(got) != "FIRST version" {
		t.Fatalf("after the overwrite the store has %q, want %q", got, "FIRST version")
	}
}

// A reader opened while a writer is still open shares its data file: it
// sees the writer's bytes, and the kernel accepts both opens.
func TestPassthroughReaderAndWriterTogether(t *testing.T) {
	for _, mode := range ioModes {
		t.Run(mode.name, func(t *testing.T) {
			mnt, c, _ := testMountWith(t, cache.Options{Store: s3.NewMem()}, Options{Passthrough: mode.passthrough})
			p := filepath.Join(mnt, "f")
			w, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			if _, err := w.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			r, err := os.Open(p)
			if err != nil {
				t.Fatalf("open for reading beside a writer: %v", err)
			}
			defer r.Close()
			buf := make([]byte, 5)
			if _, err := r.ReadAt(buf, 0); err != nil || string(buf) != "hello" {
				t.Fatalf("reader sees %q, %v", buf, err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			drain(t, c)
		})
	}
}
