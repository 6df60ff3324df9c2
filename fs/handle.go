package fs

import (
	"context"
	"os"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/s3mediafs/s3mediafs/cache"
)

// handle is an open file.
type handle struct {
	n        *node
	h        *cache.Handle
	writable bool
	// daemonServed: opened under passthrough mode, but served by the
	// daemon (DIRECT_IO); counted in n.daemonServed until released.
	daemonServed bool
}

var (
	_ gofs.FileReader    = (*handle)(nil)
	_ gofs.FileWriter    = (*handle)(nil)
	_ gofs.FileFlusher   = (*handle)(nil)
	_ gofs.FileReleaser  = (*handle)(nil)
	_ gofs.FileFsyncer   = (*handle)(nil)
	_ gofs.FileAllocater = (*handle)(nil)
)

func newHandle(n *node, h *cache.Handle, flags int) *handle {
	return &handle{n: n, h: h, writable: flags&(os.O_WRONLY|os.O_RDWR) != 0}
}

// passthroughHandle is an open file whose reads and writes the kernel
// sends straight to the cache's data file (FUSE passthrough): only open,
// flush, fsync and release reach the daemon.
type passthroughHandle struct{ *handle }

var _ gofs.FilePassthroughFder = passthroughHandle{}

// PassthroughFd implements gofs.FilePassthroughFder. go-fuse registers
// the descriptor once per inode and shares it with every later open while
// one is registered; all handles of a file share one data file too.
func (f passthroughHandle) PassthroughFd() (int, bool) { return f.h.DataFd() }

// fileOf returns the handle behind a go-fuse file handle of this package.
func fileOf(f gofs.FileHandle) (*handle, bool) {
	switch f := f.(type) {
	case *handle:
		return f, true
	case passthroughHandle:
		return f.handle, true
	}
	return nil, false
}

// open wraps a cache handle for the kernel: passthrough when the mount
// has it and the bytes are local (fetching them first for a writer). The
// kernel refuses a passthrough open of an inode that another open uses
// through the page cache, so no open under passthrough uses it: a reader
// of a file only the store has (unless a large one, see Handle.Streams)
// is served by the daemon with direct I/O, from the bytes as they arrive,
// while the fetch makes the file local for the opens after it. A
// direct-I/O open may sit beside passthrough opens; the kernel refuses
// only the reverse, a non-passthrough open of an inode open for
// passthrough, which cannot happen here: that inode's bytes are local,
// and open files are not evicted.
func (n *node) open(ctx context.Context, h *cache.Handle, flags int) (gofs.FileHandle, uint32, error) {
	fh := newHandle(n, h, flags)
	// A read-only handle has nothing to flush: its close(2) need not
	// wait for a round trip to the daemon.
	var fuseFlags uint32
	if !fh.writable {
		fuseFlags = fuse.FOPEN_NOFLUSH
	}
	if !n.opts.passthrough() {
		if fh.writable {
			return fh, fuseFlags, nil
		}
		// Media does not change once written, and writes through this
		// mount keep the kernel's pages current themselves: a read-only
		// open may keep what the kernel cached from the last one.
		return fh, fuseFlags | fuse.FOPEN_KEEP_CACHE, nil
	}
	if !fh.writable && h.Streams() {
		h.Prefetch()
		return fh.servedByDaemon(), fuseFlags | fuse.FOPEN_DIRECT_IO, nil
	}
	local, err := h.MakeLocal(ctx)
	if err != nil {
		return nil, 0, err
	}
	if !local {
		// No room to keep it: the daemon serves it from the store.
		return fh.servedByDaemon(), fuseFlags | fuse.FOPEN_DIRECT_IO, nil
	}
	if n.daemonServed.Load() > 0 {
		// A daemon-served open of this inode is not fully released yet
		// (see Release): a passthrough open now could lose its backing.
		return fh.servedByDaemon(), fuseFlags | fuse.FOPEN_DIRECT_IO, nil
	}
	if fh.writable {
		if err := h.WriteDirectly(ctx); err != nil {
			return nil, 0, err
		}
	}
	return passthroughHandle{fh}, fuseFlags, nil
}

// backingSettle is how long after a daemon-served release passthrough
// opens of the same inode wait: go-fuse's own bookkeeping follows the
// release at once, so a second is ample even on a loaded machine.
const backingSettle = time.Second

// servedByDaemon marks a handle as served by the daemon under passthrough
// mode, counted until its release has settled.
func (f *handle) servedByDaemon() *handle {
	f.daemonServed = true
	f.n.daemonServed.Add(1)
	return f
}

// Read implements gofs.FileReader.
func (f *handle) Read(ctx context.Context, dest []byte, off int64) (_ fuse.ReadResult, errno syscall.Errno) {
	defer f.n.observe("read", time.Now(), &errno)
	n, err := f.h.ReadAt(ctx, dest, off)
	if err != nil {
		return nil, f.n.fail("read", f.n.path(), err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// Write implements gofs.FileWriter.
func (f *handle) Write(ctx context.Context, data []byte, off int64) (_ uint32, errno syscall.Errno) {
	defer f.n.observe("write", time.Now(), &errno)
	n, err := f.h.WriteAt(ctx, data, off)
	if err != nil {
		return uint32(n), f.n.fail("write", f.n.path(), err)
	}
	return uint32(n), 0
}

// Flush implements gofs.FileFlusher; it runs on every close(2).
func (f *handle) Flush(ctx context.Context) (errno syscall.Errno) {
	defer f.n.observe("flush", time.Now(), &errno)
	if err := f.h.Flush(ctx); err != nil {
		return f.n.fail("flush", f.n.path(), err)
	}
	return 0
}

// Release implements gofs.FileReleaser.
func (f *handle) Release(ctx context.Context) (errno syscall.Errno) {
	defer f.n.observe("release", time.Now(), &errno)
	if f.daemonServed {
		// go-fuse drops one backing reference of the inode at every
		// release, after this returns, passthrough or not. Were a
		// passthrough open to take the inode's first reference before
		// that, this release would drop it, the backing would be
		// unregistered under the open file, and the next open would fail
		// with EIO. So passthrough waits until this release is surely
		// done.
		defer time.AfterFunc(backingSettle, func() { f.n.daemonServed.Add(-1) })
	}
	if f.daemonServed {
		time.Sleep(f.n.opts.releaseDelay)
	}
	if err := f.h.Release(ctx); err != nil {
		return f.n.fail("release", f.n.path(), err)
	}
	return 0
}

// Allocate implements gofs.FileAllocater (fallocate(2)).
func (f *handle) Allocate(ctx context.Context, off, size uint64, mode uint32) (errno syscall.Errno) {
	defer f.n.observe("allocate", time.Now(), &errno)
	if err := f.h.Allocate(ctx, int64(off), int64(size), mode); err != nil {
		return f.n.fail("fallocate", f.n.path(), err)
	}
	return 0
}

// Fsync implements gofs.FileFsyncer.
func (f *handle) Fsync(ctx context.Context, flags uint32) (errno syscall.Errno) {
	defer f.n.observe("fsync", time.Now(), &errno)
	if err := f.h.Fsync(ctx); err != nil {
		return f.n.fail("fsync", f.n.path(), err)
	}
	return 0
}
