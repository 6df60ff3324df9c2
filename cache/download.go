package cache

import (
	"io"
	"os"
	"sync"
	"sync/atomic"
)

// download is a fetch in flight. Once its bytes have arrived and passed
// their check, readers read them in its scratch file before the file is
// installed; no reader sees a byte that has not passed.
type download struct {
	finished chan struct{} // closed when the fetch has ended
	err      error         // why it failed; read after finished

	// metaKnown is closed once the GET's response has brought the
	// object's metadata and it is in the index (or the fetch has ended):
	// a stat waits for no more than that.
	metaKnown chan struct{}
	metaOnce  sync.Once

	progress *notifier // broadcast as bytes arrive and at the end

	mu   sync.RWMutex // held shared by a read of file
	file *os.File     // the scratch file, for reading; nil unless streaming
	// arrived is how many bytes from offset 0 are in the scratch file;
	// size is the object's size, once the store has said it.
	arrived, size atomic.Int64
}

func newDownload() *download {
	return &download{finished: make(chan struct{}), metaKnown: make(chan struct{}), progress: newNotifier()}
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

// arrive makes the first n bytes, checked, readable.
func (d *download) arrive(n int64) {
	d.arrived.Store(n)
	d.progress.Broadcast()
}

// learnedMeta says the object's metadata is in the index.
func (d *download) learnedMeta() { d.metaOnce.Do(func() { close(d.metaKnown) }) }

// finish ends the download: readers go to the installed file from now on.
func (d *download) finish(err error) {
	defer d.learnedMeta()
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
