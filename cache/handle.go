package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// openFile is the state shared by every handle open on one file.
type openFile struct {
	// mu is held shared by each write and truncate, exclusively by flush
	// and by whoever sets data, so a flush always sees whole writes.
	mu   sync.RWMutex
	data *os.File // the local data file; nil while the bytes are only in the store

	// Guarded by Cache.mu:
	path     string // current path; rename moves it
	attr     Attr   // identity and mode, for fstat after unlink
	refs     int
	unlinked bool // the name is gone; writes go on, but nothing is recorded

	// dirty is set (under Cache.mu) by the first write after a flush and
	// cleared by the flush that records it.
	dirty atomic.Bool

	// directWriters counts writable handles whose writes go from the
	// kernel straight to the data file (FUSE passthrough): this process
	// never sees them, so a flush compares the data file with committed.
	directWriters atomic.Int32
	committed     fingerprint // the data file as last committed; guarded by mu
}

// fingerprint identifies one state of a data file: any write moves its
// size or change time (to the nanosecond where the filesystem tracks
// change times finely, as ext4, XFS and tmpfs do on Linux ≥ 6.13).
type fingerprint struct {
	size         int64
	mtime, ctime syscall.Timespec
}

func fingerprintOf(fi os.FileInfo) fingerprint {
	fp := fingerprint{size: fi.Size()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		fp.mtime, fp.ctime = st.Mtim, st.Ctim
	}
	return fp
}

// live reports whether the data file may hold bytes newer than the index.
func (of *openFile) live() bool {
	return of.dirty.Load() || of.directWriters.Load() > 0
}

// Handle is one open file description.
type Handle struct {
	c        *Cache
	of       *openFile
	writable bool
	direct   bool // writes bypass WriteAt; see WriteDirectly
	released atomic.Bool

	// fromStore says the file cannot be kept in the cache now: reads go
	// to the store (stream) and keep nothing. Read-only handles only.
	fromStore atomic.Bool
	stream    storeStream
}

// OpenFile opens the file at p. flags are the open(2) flags; O_TRUNC on a
// writable open empties the file without fetching it.
func (c *Cache) OpenFile(ctx context.Context, p string, flags int) (*Handle, error) {
	if err := c.checkPath(p); err != nil {
		return nil, err
	}
	writable := flags&os.O_WRONLY != 0 || flags&os.O_RDWR != 0
	c.mu.Lock()
	r, ok, err := c.readRecord(p)
	switch {
	case err != nil:
		c.mu.Unlock()
		return nil, err
	case !ok:
		c.mu.Unlock()
		return nil, fmt.Errorf("open %q: %w", p, ErrNotExist)
	case r.Dir:
		c.mu.Unlock()
		return nil, fmt.Errorf("open %q: %w", p, ErrIsDir)
	}
	of := c.open[p]
	if of == nil {
		of = &openFile{path: p, attr: attrOf(r)}
		if r.State != Remote {
			of.data = c.openDataLocked(p, r)
		}
		c.open[p] = of
	}
	of.refs++
	c.touchLocked(p)
	if r.State != Remote {
		c.stats.hits.Add(1)
	}
	c.mu.Unlock()

	h := &Handle{c: c, of: of, writable: writable}
	if writable && flags&os.O_TRUNC != 0 {
		err = h.Truncate(ctx, 0)
	} else if writable {
		err = h.ensureData(ctx)
	}
	if err != nil {
		h.Release(ctx)
		return nil, err
	}
	return h, nil
}

// openDataLocked opens the data file of a local record. A missing file, or
// a clean one whose size disagrees with the index (a torn write before a
// power loss, or tampering), is dropped so the bytes are fetched again.
func (c *Cache) openDataLocked(p string, r record) *os.File {
	f, err := os.OpenFile(c.dataPath(r.Data), os.O_RDWR, 0)
	if err == nil && r.State == Clean {
		if fi, serr := f.Stat(); serr != nil || fi.Size() != r.Size {
			f.Close()
			f, err = nil, fmt.Errorf("data file has the wrong size")
		}
	}
	if err == nil {
		return f
	}
	if r.State != Clean {
		// The only copy of unsent bytes is gone: say so loudly; reads see
		// an I/O error rather than invented data.
		c.log.Error("data file of a dirty file is missing", "path", p, "err", err)
		return nil
	}
	c.log.Warn("dropping bad local copy; it will be fetched again", "path", p, "err", err)
	r.State, r.Data = Remote, ""
	if uerr := c.update(func(t *tx) error { return t.put(p, r) }); uerr != nil {
		c.log.Error("index update failed", "path", p, "err", uerr)
	}
	return nil
}

// ensureData makes the bytes local, fetching them from the store once.
func (h *Handle) ensureData(ctx context.Context) error {
	if h.Local() {
		return nil
	}
	of, c, p := h.of, h.c, h.path()
	if err := c.fetch(ctx, p); err != nil {
		return err
	}
	of.mu.Lock()
	defer of.mu.Unlock()
	if of.data != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok, err := c.readRecord(of.path)
	if err != nil {
		return err
	}
	if !ok || r.Dir || r.State == Remote {
		return fmt.Errorf("read %q: local copy vanished: %w", p, ErrStore)
	}
	of.data = c.openDataLocked(of.path, r)
	if of.data == nil {
		return fmt.Errorf("read %q: %w", p, ErrStore)
	}
	return nil
}

// MakeLocal fetches the file's bytes into the cache if only the store has
// them, so that DataFd can hand the kernel the data file. ok is false,
// without error, for a reader of a file the cache has no room to keep:
// its reads are served from the store (ReadAt).
func (h *Handle) MakeLocal(ctx context.Context) (ok bool, err error) {
	err = h.ensureData(ctx)
	if h.streamsOn(err) {
		return false, nil
	}
	return err == nil, err
}

// DataFd returns the descriptor of the local data file, for the kernel to
// read (and, after WriteDirectly, write) it without this process: FUSE
// passthrough. ok is false while only the store has the bytes. The
// descriptor stays valid until the last handle on the file is released.
func (h *Handle) DataFd() (fd int, ok bool) {
	h.of.mu.RLock()
	defer h.of.mu.RUnlock()
	if h.of.data == nil {
		return -1, false
	}
	return int(h.of.data.Fd()), true
}

// WriteDirectly declares that this writable handle's writes go to the
// data file without passing through WriteAt. A new version starts now
// (it must fit, and it is not uploaded while being written), and every
// flush until the handle is released records whatever the data file
// then holds.
func (h *Handle) WriteDirectly(ctx context.Context) error {
	if !h.writable || h.direct {
		return nil
	}
	if err := h.beginWrite(ctx); err != nil {
		return err
	}
	h.direct = true
	h.of.directWriters.Add(1)
	h.of.mu.RUnlock()
	return nil
}

// ReadAt reads from the file. If only the store has it, the read is
// served from the bytes as they arrive (see readArriving), or once the
// file is local.
func (h *Handle) ReadAt(ctx context.Context, b []byte, off int64) (int, error) {
	if h.fromStore.Load() {
		return h.readStream(ctx, b, off)
	}
	if n, err, ok := h.readArriving(ctx, b, off); ok {
		if h.streamsOn(err) {
			return h.readStream(ctx, b, off)
		}
		return n, err
	}
	if err := h.ensureData(ctx); err != nil {
		if h.streamsOn(err) {
			return h.readStream(ctx, b, off)
		}
		return 0, err
	}
	h.of.mu.RLock()
	defer h.of.mu.RUnlock()
	n, err := h.of.data.ReadAt(b, off)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return n, err
}

// readArriving serves a read of a file only the store has from the bytes
// of its download that have arrived, so the first bytes of a cache miss
// do not wait for the whole object. ok is false when the read is to be
// served from the local copy (there is one, or the download has ended, or
// it is one that is not read as it arrives).
func (h *Handle) readArriving(ctx context.Context, b []byte, off int64) (n int, err error, ok bool) {
	if !h.Streams() {
		return 0, nil, false
	}
	d := h.c.startFetch(h.path())
	for {
		wake := d.progress.C()
		if n, err, ready := d.readAt(b, off); ready {
			return n, err, true
		}
		if d.done() {
			// Installed: read the local copy. Failed: say why, rather
			// than start another download and wait as long again.
			return 0, d.err, d.err != nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return 0, ctx.Err(), true
		}
	}
}

// Prefetch starts fetching the file's bytes if only the store has them,
// without waiting: reads then find them arriving.
func (h *Handle) Prefetch() {
	if !h.Local() {
		h.c.startFetch(h.path())
	}
}

// path is where the file is now; a rename may move it.
func (h *Handle) path() string {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	return h.of.path
}

// Local reports whether the file's bytes are in the cache, so that the
// kernel can be handed the data file (DataFd).
func (h *Handle) Local() bool {
	h.of.mu.RLock()
	defer h.of.mu.RUnlock()
	return h.of.data != nil
}

// Streams reports whether reads are served from the file's bytes as they
// arrive from the store: it is not local, and not so large that it is
// fetched as parallel ranges (whose bytes arrive out of order; a reader of
// such a file is best served once it is local, at local-disk speed).
func (h *Handle) Streams() bool {
	h.c.mu.Lock()
	size := h.of.attr.Size
	h.c.mu.Unlock()
	return size < rangedFetchMin && !h.Local()
}

// beginWrite holds of.mu shared with the file marked dirty, so that the
// write it guards is covered by the next flush. The caller must RUnlock.
func (h *Handle) beginWrite(ctx context.Context) error {
	if !h.writable {
		return fmt.Errorf("write: %w", ErrInvalid)
	}
	if err := h.ensureData(ctx); err != nil {
		return err
	}
	of := h.of
	if !of.dirty.Load() {
		// A new version starts: it must fit, and wait while too much is
		// owed to the store.
		if err := h.c.admit(ctx, 0, true, h.c.opts.SpaceWait); err != nil {
			return err
		}
	}
	of.mu.RLock()
	for !of.dirty.Load() {
		of.mu.RUnlock()
		if err := h.c.markDirty(of); err != nil {
			return err
		}
		of.mu.RLock()
	}
	return nil
}

// WriteAt writes to the local data file only; the upload happens after close.
func (h *Handle) WriteAt(ctx context.Context, b []byte, off int64) (int, error) {
	if err := h.c.checkFloor(ctx, int64(len(b))); err != nil {
		return 0, err
	}
	if err := h.beginWrite(ctx); err != nil {
		return 0, err
	}
	defer h.of.mu.RUnlock()
	if err := h.checkHoleTo(off); err != nil {
		return 0, err
	}
	n, err := h.of.data.WriteAt(b, off)
	h.c.free.consumed(int64(n))
	return n, err
}

// Truncate sets the file's size. Emptying a file that only the store has
// does not fetch it.
func (h *Handle) Truncate(ctx context.Context, size int64) error {
	if size < 0 {
		return ErrInvalid
	}
	if size == 0 {
		if err := h.emptyData(); err != nil {
			return err
		}
	}
	if err := h.beginWrite(ctx); err != nil {
		return err
	}
	defer h.of.mu.RUnlock()
	if err := h.checkHoleTo(size); err != nil {
		return err
	}
	return h.of.data.Truncate(size)
}

// checkHoleTo admits a change of the file's size to end that leaves the
// bytes between the current end and end unwritten: a hole grows the file
// in one step (see checkGrowth), where writes in order at the end grow it
// a write at a time. Callers hold of.mu shared, with data set.
func (h *Handle) checkHoleTo(end int64) error {
	fi, err := h.of.data.Stat()
	if err != nil {
		return fmt.Errorf("stat data file: %w", err)
	}
	return h.c.checkGrowth(end - fi.Size())
}

// emptyData gives a store-only file an empty local data file.
func (h *Handle) emptyData() error {
	of, c := h.of, h.c
	of.mu.Lock()
	defer of.mu.Unlock()
	if of.data != nil {
		return nil
	}
	id, f, err := c.newData()
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	err = c.update(func(t *tx) error {
		r, ok, err := t.get(of.path)
		if err != nil || !ok {
			return errorOr(err, ErrNotExist)
		}
		r.State, r.Data, r.Size, r.Gen = c.versionState(of.path), id, 0, r.Gen+1
		r.MTime = time.Now().UnixNano()
		return c.putVersion(t, of.path, r)
	})
	if err != nil {
		f.Close()
		c.removeData(id)
		return err
	}
	of.data = f
	of.dirty.Store(true)
	c.q.supersede(of.path)
	return nil
}

// markDirty records that a new version of the file is being written: the
// generation moves on (so an upload in flight cannot mark it clean) and an
// upload is owed.
func (c *Cache) markDirty(of *openFile) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if of.dirty.Load() {
		return nil
	}
	if !of.unlinked {
		err := c.update(func(t *tx) error {
			r, ok, err := t.get(of.path)
			if err != nil || !ok {
				return errorOr(err, ErrNotExist)
			}
			r.Gen++
			r.State = c.versionState(of.path)
			return c.putVersion(t, of.path, r)
		})
		if err != nil {
			return err
		}
		c.q.supersede(of.path)
	}
	of.dirty.Store(true)
	return nil
}

// putVersion writes a new local version of p and, unless it stays local,
// owes its upload.
func (c *Cache) putVersion(t *tx, p string, r record) error {
	if err := t.put(p, r); err != nil {
		return err
	}
	if r.State == Local {
		return nil
	}
	return setPending(t.txn, p)
}

// Flush records the size written and queues the upload. It is what makes
// close() durable against a daemon crash: the bytes are in the data file
// and the index says an upload is owed.
func (h *Handle) Flush(ctx context.Context) error {
	if !h.writable {
		return nil
	}
	if err := h.commit(false); err != nil {
		return err
	}
	return h.waitStored(ctx)
}

// waitStored, in synchronous mode, waits until the store has the version
// just committed, or reports why it does not within StoreTimeout. The
// data stays safe in the cache either way and keeps being retried.
func (h *Handle) waitStored(ctx context.Context) error {
	c := h.c
	if !c.opts.Synchronous {
		return nil
	}
	c.mu.Lock()
	p, gone := h.of.path, h.of.unlinked
	c.mu.Unlock()
	if gone {
		return nil
	}
	deadline := time.NewTimer(c.opts.StoreTimeout)
	defer deadline.Stop()
	for {
		wake := c.q.finished.C()
		var r record
		var ok, pending bool
		if err := c.view(func(txn *badger.Txn) error {
			var err error
			if r, ok, err = getRecord(txn, p); err != nil {
				return err
			}
			pending, err = hasPending(txn, p)
			return err
		}); err != nil {
			return err
		}
		if !ok || r.Dir || !pending && (r.State == Clean || r.State == Local) {
			return nil
		}
		select {
		case <-wake:
			if err := c.q.failure(p); err != nil {
				return fmt.Errorf("store %q: %w: %w", p, ErrStore, err)
			}
		case <-deadline.C:
			return fmt.Errorf("store %q: not confirmed in %v; it stays queued: %w", p, c.opts.StoreTimeout, ErrStore)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Fsync is Flush plus fsync of the data file and the index, so the file
// also survives power loss.
func (h *Handle) Fsync(ctx context.Context) error {
	if err := h.commit(true); err != nil {
		return err
	}
	if err := h.c.Sync(); err != nil {
		return err
	}
	if h.writable {
		return h.waitStored(ctx)
	}
	return nil
}

func (h *Handle) commit(syncData bool) error {
	of, c := h.of, h.c
	of.mu.Lock()
	defer of.mu.Unlock()
	if of.data == nil {
		return nil
	}
	if syncData {
		if err := of.data.Sync(); err != nil {
			return fmt.Errorf("fsync data file: %w", err)
		}
	}
	if !of.live() {
		return nil
	}
	fi, err := of.data.Stat()
	if err != nil {
		return fmt.Errorf("stat data file: %w", err)
	}
	fp := fingerprintOf(fi)
	if !of.dirty.Load() && fp == of.committed {
		return nil // direct writers wrote nothing since the last commit
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := of.path
	if !of.unlinked {
		err = c.update(func(t *tx) error {
			r, ok, err := t.get(p)
			if err != nil || !ok {
				return errorOr(err, ErrNotExist)
			}
			if err := c.refuseDirectHole(of, fi, r.Size); err != nil {
				return err
			}
			r.Size = fi.Size()
			r.MTime = fi.ModTime().UnixNano()
			r.Gen++
			r.State = c.versionState(p)
			return c.putVersion(t, p, r)
		})
		if err != nil {
			return err
		}
		c.q.add(p)
	}
	of.committed = fp
	of.dirty.Store(false)
	return nil
}

// refuseDirectHole is checkHoleTo for writes the daemon never saw (FUSE
// passthrough): a version that grew past the last one's size by a hole
// that could not fit is not recorded. The data file goes back to that
// size, and the writer's close(2) reports the refusal. Callers hold c.mu.
func (c *Cache) refuseDirectHole(of *openFile, fi os.FileInfo, lastSize int64) error {
	if of.directWriters.Load() == 0 || fi.Size() <= lastSize {
		return nil
	}
	var allocated int64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		allocated = st.Blocks * 512
	}
	hole := fi.Size() - lastSize - allocated
	err := c.checkGrowthLocked(hole)
	if err == nil {
		return nil
	}
	if terr := of.data.Truncate(lastSize); terr != nil {
		return fmt.Errorf("%w (and cutting it back failed: %w)", err, terr)
	}
	return err
}

// Release closes the handle; the last one closes the data file.
func (h *Handle) Release(ctx context.Context) error {
	if !h.released.CompareAndSwap(false, true) {
		return nil
	}
	var err error
	if h.writable && h.of.live() {
		err = h.commit(false)
	}
	if h.direct {
		h.of.directWriters.Add(-1)
	}
	h.stream.mu.Lock()
	h.stream.close()
	h.stream.mu.Unlock()
	c, of := h.c, h.of
	c.mu.Lock()
	of.refs--
	last := of.refs == 0
	if last && c.open[of.path] == of {
		delete(c.open, of.path)
	}
	c.mu.Unlock()
	if last {
		of.mu.Lock()
		if of.data != nil {
			err = errors.Join(err, of.data.Close())
			of.data = nil
		}
		of.mu.Unlock()
	}
	return err
}

// Attr describes the open file, even after its name is gone.
func (h *Handle) Attr() Attr {
	h.c.mu.Lock()
	a := h.of.attr
	a.Unlinked = h.of.unlinked
	h.c.mu.Unlock()
	h.of.mu.RLock()
	defer h.of.mu.RUnlock()
	if h.of.data != nil {
		if fi, err := h.of.data.Stat(); err == nil {
			a.Size, a.MTime = fi.Size(), fi.ModTime()
		}
	}
	return a
}

// Allocate is fallocate(2) on the file.
func (h *Handle) Allocate(ctx context.Context, off, size int64, mode uint32) error {
	if err := h.beginWrite(ctx); err != nil {
		return err
	}
	defer h.of.mu.RUnlock()
	if err := h.checkHoleTo(off + size); err != nil {
		return err
	}
	return syscall.Fallocate(int(h.of.data.Fd()), mode, off, size)
}
