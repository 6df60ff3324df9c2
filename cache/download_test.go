// A fetch in flight: readers get bytes as they arrive, a failed fetch is
// their answer, and a fetch never reads as an empty file.

package cache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// A cold read waits for the whole object to arrive and pass its check:
// no reader sees a byte of a download that could still fail (and be
// fetched again). A read at the end is answered at once; the file is then
// local.
func TestColdReadServesOnlyCheckedBytes(t *testing.T) {
	mem := objstore.NewMem()
	data := bytes.Repeat([]byte("0123456789abcdef"), 20_000) // 320 kB
	mem.SetObject("m/media", data)
	release := make(chan struct{})
	store := &objstore.Faulty{Store: mem, Body: func(_ string, body io.ReadCloser, _ int64) io.ReadCloser {
		return objstore.HoldBack(body, 64<<10, release)
	}}
	c := openTest(t, t.TempDir(), store, nil)
	ctx := context.Background()
	h := openForReading(t, c, "m/media")

	got := make(chan []byte, 1)
	go func() {
		buf := make([]byte, 4096)
		n, err := h.ReadAt(ctx, buf, 1000)
		if err != nil {
			t.Error(err)
		}
		got <- buf[:n]
	}()
	select {
	case <-got:
		t.Fatal("a read was served bytes of a download not yet checked")
	case <-time.After(200 * time.Millisecond):
	}
	if h.Local() {
		t.Fatal("local before the object has arrived")
	}
	if n, err := h.ReadAt(ctx, make([]byte, 10), int64(len(data))); n != 0 || err != nil {
		t.Fatalf("read at the end: %d, %v", n, err)
	}
	close(release)
	if b := <-got; !bytes.Equal(b, data[1000:5096]) {
		t.Fatalf("first read: wrong bytes")
	}
	eventually(t, func() bool { a, _ := c.Stat(ctx, "m/media"); return a.State == Clean })
	whole := make([]byte, len(data)+10)
	if n, err := h.ReadAt(ctx, whole, 0); err != nil || !bytes.Equal(whole[:n], data) {
		t.Fatalf("whole file after the fetch: %d bytes, %v", n, err)
	}
}

// A download that fails is the read's answer: the reader gets its error
// (EIO) after one store_timeout, not a second download and as long again.
func TestFailedDownloadIsTheReadsAnswer(t *testing.T) {
	mem := objstore.NewMem()
	mem.SetObject("m/media", []byte("bytes that never come"))
	var gets atomic.Int32
	store := &objstore.Faulty{Store: mem, BeforeGet: func(ctx context.Context, _ string) error {
		gets.Add(1)
		<-ctx.Done() // a store that never answers
		return ctx.Err()
	}}
	c, err := Open(Options{Dir: t.TempDir(), Store: store, StoreTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	t.Cleanup(func() { c.Close() })
	ctx := context.Background()
	h := openForReading(t, c, "m/media")
	if _, err := h.ReadAt(ctx, make([]byte, 10), 0); !errors.Is(err, ErrStore) {
		t.Fatalf("read with the store away: %v, want ErrStore", err)
	}
	if n := gets.Load(); n != 1 {
		t.Fatalf("%d GETs for one read, want 1", n)
	}
}

// openForReading opens a file the store has, looking its path up first as
// the kernel does; the handle is released when the test ends.
func openForReading(t *testing.T, c *Cache, p string) *Handle {
	t.Helper()
	ctx := context.Background()
	for i := range p {
		if p[i] == '/' {
			if _, err := c.Stat(ctx, p[:i]); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := c.Stat(ctx, p); err != nil {
		t.Fatal(err)
	}
	h, err := c.OpenFile(ctx, p, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Release(ctx) })
	return h
}

// A reader that comes as a download begins must never take it for an
// empty object: the size is known before the scratch file is readable.
// (It was published after, and a cold read under load once returned 0
// bytes for a 70,000-byte file.)
func TestDownloadNeverLooksEmptyAsItBegins(t *testing.T) {
	scratch := filepath.Join(t.TempDir(), "scratch")
	if err := os.WriteFile(scratch, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2000; i++ {
		d := newDownload()
		stop := make(chan struct{})
		bad := make(chan string, 1)
		go func() {
			b := make([]byte, 10)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if n, err, ready := d.readAt(b, 0); ready {
					if n == 0 && err == nil {
						bad <- "a ready read of a 70,000-byte object returned 0 bytes, no error"
					}
					return
				}
			}
		}()
		if err := d.begin(scratch, 70_000); err != nil {
			t.Fatal(err)
		}
		d.arrived.Store(0)
		time.Sleep(time.Microsecond)
		close(stop)
		d.finish(nil)
		select {
		case msg := <-bad:
			t.Fatalf("round %d: %s", i, msg)
		default:
		}
	}
}
