package cache

import (
	"io"
	"os"
	"sync"
	"sync/atomic"
)

// download is a fetch in flight. While it runs, readers of the file read
// the bytes that have arrived in its scratch file, so the first bytes of
// a cache miss do not wait for the whole object.
type download struct {
	finished chan struct{} // closed when the fetch has ended
	err      error         // why it failed; read after finished

	progress *notifier // broadcast as bytes arrive and at the end

	mu   sync.RWMutex // held shared by a read of file
	file *os.File     // the scratch file, for reading; nil unless streaming
	// arrived is how many bytes from offset 0 are in the scratch file;
	// size is the object's size, once the store has said it.
	arrived, size atomic.Int64
}

func newDownload() *download {
	return &download{finished: make(chan struct{}), progress: newNotifier()}
}

// begin makes the download readable as it arrives: name is the scratch
// file, size what the object is expected to hold.
func (d *download) begin(name string, size int64) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	// The size first: a reader that sees the file must not see it as
	// an object of zero bytes.
	d.size.Store(size)
	d.mu.Lock()
	d.file = f
	d.mu.Unlock()
	return nil
}

// expect records the object's size as the store reported it.
func (d *download) expect(size int64) { d.size.Store(size) }

// finish ends the download: readers go to the installed file from now on.
func (d *download) finish(err error) {
	d.mu.Lock()
	if d.file != nil {
		d.file.Close()
		d.file = nil
	}
	d.mu.Unlock()
	d.err = err
	close(d.finished)
	d.progress.Broadcast()
}

// done reports whether the download has ended.
func (d *download) done() bool {
	select {
	case <-d.finished:
		return true
	default:
		return false
	}
}

// readAt reads len(b) bytes at off from what has arrived (fewer at the end
// of the object). ready is false while those bytes are still to come, or
// when the download cannot be read as it arrives.
func (d *download) readAt(b []byte, off int64) (n int, err error, ready bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.file == nil {
		return 0, nil, false
	}
	size := d.size.Load()
	if off >= size {
		return 0, nil, true // at or past the end
	}
	want := min(off+int64(len(b)), size)
	if d.arrived.Load() < want {
		return 0, nil, false
	}
	n, err = d.file.ReadAt(b[:want-off], off)
	if err == io.EOF {
		err = nil
	}
	return n, err, true
}

// arrivals is the scratch file as the download writes it, telling readers
// of each write. Downloads that write it in order (whole-object GETs and
// their resumptions) use it.
type arrivals struct {
	f *os.File
	d *download
}

func (a arrivals) Write(b []byte) (int, error) {
	n, err := a.f.Write(b)
	a.d.arrived.Add(int64(n))
	a.d.progress.Broadcast()
	return n, err
}
