package cache

import (
	"bytes"
	"context"
	"os"
	"testing"
	"unsafe"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
	"golang.org/x/sys/unix"
)

// Emptying a file releases a descriptor of its data file at once: on ext4
// the first release after a truncate to zero flushes the file's delayed
// allocations (auto_da_alloc), and it must not be the writer's close after
// a rewrite (see clearFlushOnClose). Watched with inotify: the data file
// is closed, unwritten, during the truncate.
func TestEmptyingReleasesTheDataFileAtOnce(t *testing.T) {
	c := openWith(t, Options{Store: objstore.NewMem()})
	ctx := context.Background()
	writeFile(t, c, "m/f", bytes.Repeat([]byte("x"), 1<<20))
	r, _, err := c.readRecord("m/f")
	if err != nil {
		t.Fatal(err)
	}
	h, err := c.OpenFile(ctx, "m/f", os.O_RDWR)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Release(ctx)
	in, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(in)
	if _, err := unix.InotifyAddWatch(in, c.data.Path(r.Data), unix.IN_CLOSE_NOWRITE); err != nil {
		t.Fatal(err)
	}
	if err := h.Truncate(ctx, 0); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := unix.Read(in, buf)
	if err != nil || n < unix.SizeofInotifyEvent {
		t.Fatalf("no descriptor of the data file was released by the truncate (%d bytes, %v)", n, err)
	}
	if ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[0])); ev.Mask&unix.IN_CLOSE_NOWRITE == 0 {
		t.Fatalf("event %#x, want a close", ev.Mask)
	}
}
