package cache

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/s3mediafs/s3mediafs/cache/index"
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
	return c.OpenInode(ctx, p, 0, flags)
}

// InodeOf returns the inode number of the record at p, from the index
// alone; ok is false when it has none.
func (c *Cache) InodeOf(p string) (ino uint64, ok bool) {
	r, ok, err := c.readRecord(p)
	return r.Ino, ok && err == nil
}

// PathOfInode returns the path of the file or directory with inode number
// ino, from the index alone; ok is false when none has it any more. It
// lets a daemon that took over a live mount answer for the inodes the
// kernel learnt from the one before it.
func (c *Cache) PathOfInode(ino uint64) (p string, ok bool, err error) {
	err = c.ix.View(func(txn index.View) error {
		p, ok, err = txn.PathOfInode(ino)
		return err
	})
	return p, ok, err
}

// OpenInode is OpenFile of the file p only while p is still the inode
// ino (0: any): a name the kernel resolved may have been renamed over
// since (a file swapped for a symlink, say), and opening, let alone
// truncating, whatever p names now would act on another file.
func (c *Cache) OpenInode(ctx context.Context, p string, ino uint64, flags int) (*Handle, error) {
	return c.openInode(ctx, p, ino, flags, false)
}

// ReopenWriter reopens, in a process that took a live mount over, a file
// the kernel holds open for writing from the process before, and declares
// it written directly (WriteDirectly). That process may have committed a
// version of the file, and uploaded it, before the kernel wrote more to
// the data file unseen: a data file larger than a clean record says is
// here the writer's bytes, not a torn write, and it is kept.
func (c *Cache) ReopenWriter(ctx context.Context, p string, ino uint64, flags int) (*Handle, error) {
	h, err := c.openInode(ctx, p, ino, flags&^os.O_TRUNC, true)
	if err != nil {
		return nil, err
	}
	if err := h.WriteDirectly(ctx); err != nil {
		h.Release(ctx)
		return nil, err
	}
	return h, nil
}

func (c *Cache) openInode(ctx context.Context, p string, ino uint64, flags int, kernelWrites bool) (*Handle, error) {
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
	case ino != 0 && r.Ino != ino:
		c.mu.Unlock()
		return nil, fmt.Errorf("open %q: replaced since it was looked up: %w", p, ErrNotExist)
	case r.Kind != 0:
		// Symlinks and nodes are the kernel's to open, never ours.
		c.mu.Unlock()
		return nil, fmt.Errorf("open %q: not a regular file: %w", p, ErrInvalid)
	}
	of := c.open[p]
	if of == nil {
		of = &openFile{path: p, attr: attrOf(r)}
		if r.State != Remote {
			of.data = c.openDataLocked(p, r, kernelWrites)
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
// power loss, or tampering), is dropped so the bytes are fetched again,
// unless the kernel writes to it (see ReopenWriter).
func (c *Cache) openDataLocked(p string, r index.Record, kernelWrites bool) *os.File {
	f, err := os.OpenFile(c.data.Path(r.Data), os.O_RDWR, 0)
	if err == nil && r.State == Clean && !kernelWrites {
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
	if uerr := c.updateFreeingLocked(func(t *index.Tx) error { return t.Put(p, r) }); uerr != nil {
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
	of.data = c.openDataLocked(of.path, r, false)
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
	return h.whileWriting(ctx, func() error {
		h.direct = true
		h.of.directWriters.Add(1)
		return nil
	})
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

// detachLocked takes the file open at p off its name, which is gone
// (unlinked, or replaced by a rename): its handles go on, and Close
// closes its data file if their release never comes.
func (c *Cache) detachLocked(p string) {
	if of := c.open[p]; of != nil {
		of.unlinked = true
		delete(c.open, p)
		c.detached[of] = struct{}{}
	}
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
	if last {
		if c.open[of.path] == of {
			delete(c.open, of.path)
		}
		delete(c.detached, of)
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
			a = a.written(fi.Size(), fi.ModTime())
		}
	}
	return a
}
