package fs

import (
	"strings"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/s3mediafs/s3mediafs/cache"
)

// kernelFS stands between the kernel and go-fuse's node bridge so that a
// process can go on with a mount another process made.
//
// Node IDs are the index's inode numbers (go-fuse's ExternalNodeID), so a
// node the kernel still holds means the same file to every process. The
// file handles the kernel sees carry the process generation that opened
// them and the open's access mode beside the bridge's own handle, so a
// later process tells its own handles from inherited ones and can reopen
// those.
//
// A kernel handle is never given twice in one process: go-fuse gives a
// released bridge handle to the next open at once, while the release that
// freed it may not yet have dropped what it recorded under its kernel
// handle (the writer entry a next process reopens). Were the kernel
// handle made of the bridge handle, that entry would be taken for the new
// open's, and the new open's for the released one's.
//
// In a process that took a live mount over (adopted), a node ID the bridge
// does not hold is looked up again from the root along its path in the
// index, and the lookups the bridge holds are counted, so that the
// kernel's FORGET of a node it had from the process before (whose count
// the bridge never saw) takes no more than the bridge holds.
type kernelFS struct {
	fuse.RawFileSystem // go-fuse's node bridge
	c                  *cache.Cache
	gen                uint64 // this process's handle generation
	adopted            bool
	writers            *writers

	reopenMu sync.Mutex // one reopen at a time: it may wait for the store

	handlesMu  sync.Mutex
	handles    map[uint64]uint64 // this process's kernel handle IDs -> bridge handles
	lastHandle uint64

	mu       sync.Mutex
	counts   map[uint64]uint64 // adopted: the bridge's lookups of each node
	reopened map[uint64]uint64 // adopted: inherited handle -> bridge handle
}

// reopenFlag marks, in the flags of an open, the reopen of a handle the
// kernel had from the process before (no O_ flag has this bit): that
// process wrote to the file through it, unseen by this one.
const reopenFlag = 1 << 31

// Kernel file handles: generation | bridge handle | directory | access mode.
const (
	fhAccMode  = 0b11
	fhDir      = 1 << 2
	fhIDShift  = 3
	fhIDMask   = 1<<37 - 1
	fhGenShift = 40
	maxGen     = 1<<24 - 1
	rootNodeID = 1
)

func newKernelFS(bridge fuse.RawFileSystem, c *cache.Cache, gen uint64, adopted bool, w *writers) *kernelFS {
	return &kernelFS{RawFileSystem: bridge, c: c, gen: gen, adopted: adopted, writers: w,
		counts: map[uint64]uint64{}, reopened: map[uint64]uint64{}, handles: map[uint64]uint64{}}
}

// kernelHandle is the handle the kernel is given for the bridge's handle
// bfh of an open with flags: a new ID, none in use (see kernelFS).
func (k *kernelFS) kernelHandle(bfh uint64, flags uint32, dir bool) uint64 {
	k.handlesMu.Lock()
	for {
		k.lastHandle = (k.lastHandle + 1) & fhIDMask
		if _, used := k.handles[k.lastHandle]; k.lastHandle != 0 && !used {
			break
		}
	}
	id := k.lastHandle
	k.handles[id] = bfh
	k.handlesMu.Unlock()
	h := k.gen<<fhGenShift | id<<fhIDShift | uint64(flags)&fhAccMode
	if dir {
		h |= fhDir
	}
	return h
}

// ownHandle returns the bridge handle of one of this process's kernel
// handles, if it is still open.
func (k *kernelFS) ownHandle(kfh uint64) (uint64, bool) {
	k.handlesMu.Lock()
	defer k.handlesMu.Unlock()
	bfh, ok := k.handles[kfh>>fhIDShift&fhIDMask]
	return bfh, ok
}

// forgetHandle lets one of this process's kernel handle IDs be given again.
func (k *kernelFS) forgetHandle(kfh uint64) {
	k.handlesMu.Lock()
	defer k.handlesMu.Unlock()
	delete(k.handles, kfh>>fhIDShift&fhIDMask)
}

// bridgeHandle translates a kernel handle in place. An inherited handle is
// reopened on node (once) unless dropIfReadOnly and it was read-only: a
// read-only release has nothing to finish. ok is false when there is no
// bridge handle to give (a dropped one, or one that cannot be reopened).
func (k *kernelFS) bridgeHandle(cancel <-chan struct{}, node uint64, fh *uint64, dropIfReadOnly bool) (ok bool, st fuse.Status) {
	kfh := *fh
	if kfh == 0 {
		return true, fuse.OK
	}
	if kfh>>fhGenShift == k.gen {
		bfh, ok := k.ownHandle(kfh)
		if !ok {
			return false, fuse.EBADF
		}
		*fh = bfh
		return true, fuse.OK
	}
	if !k.adopted {
		return false, fuse.EBADF
	}
	k.reopenMu.Lock()
	defer k.reopenMu.Unlock()
	k.mu.Lock()
	bfh, found := k.reopened[kfh]
	k.mu.Unlock()
	if found {
		*fh = bfh
		return true, fuse.OK
	}
	if dropIfReadOnly && kfh&fhAccMode == syscall.O_RDONLY {
		return false, fuse.OK
	}
	if st := k.ensure(cancel, node); !st.Ok() {
		return false, st
	}
	in := fuse.OpenIn{InHeader: fuse.InHeader{NodeId: node}, Flags: uint32(kfh&fhAccMode) | reopenFlag}
	var out fuse.OpenOut
	if kfh&fhDir != 0 {
		st = k.RawFileSystem.OpenDir(cancel, &in, &out)
	} else {
		st = k.RawFileSystem.Open(cancel, &in, &out)
	}
	if !st.Ok() {
		return false, st
	}
	k.mu.Lock()
	k.reopened[kfh] = out.Fh
	k.mu.Unlock()
	*fh = out.Fh
	return true, fuse.OK
}

// ensure makes the bridge hold node, in an adopted process.
func (k *kernelFS) ensure(cancel <-chan struct{}, nodes ...uint64) fuse.Status {
	if !k.adopted {
		return fuse.OK
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, n := range nodes {
		if st := k.ensureLocked(cancel, n); !st.Ok() {
			return st
		}
	}
	return fuse.OK
}

func (k *kernelFS) ensureLocked(cancel <-chan struct{}, node uint64) fuse.Status {
	if node == rootNodeID || node == 0 || k.counts[node] > 0 {
		return fuse.OK
	}
	p, ok, err := k.c.PathOfInode(node)
	if err != nil {
		return fuse.EIO
	}
	if !ok {
		// Removed, or renamed over, while the kernel held it.
		return fuse.Status(syscall.ESTALE)
	}
	parent := uint64(rootNodeID)
	if p != "" {
		for name := range strings.SplitSeq(p, "/") {
			var out fuse.EntryOut
			st := k.RawFileSystem.Lookup(cancel, &fuse.InHeader{NodeId: parent}, name, &out)
			if !st.Ok() {
				return st
			}
			if out.NodeId == 0 {
				return fuse.Status(syscall.ESTALE)
			}
			k.counts[out.NodeId]++
			parent = out.NodeId
		}
	}
	if parent != node {
		return fuse.Status(syscall.ESTALE)
	}
	return fuse.OK
}

// learnt counts a node the kernel was given, in an adopted process.
func (k *kernelFS) learnt(st fuse.Status, out *fuse.EntryOut) fuse.Status {
	if k.adopted && st.Ok() && out.NodeId != 0 {
		k.mu.Lock()
		k.counts[out.NodeId]++
		k.mu.Unlock()
	}
	return st
}

// Forget passes on no more lookups than the bridge holds: the kernel's
// count of a node it had from the process before is larger. A FORGET
// means the kernel let go of the node, so the bridge may let go of it all.
func (k *kernelFS) Forget(node, nlookup uint64) {
	if !k.adopted {
		k.RawFileSystem.Forget(node, nlookup)
		return
	}
	k.mu.Lock()
	held := k.counts[node]
	delete(k.counts, node)
	k.mu.Unlock()
	if held > 0 {
		k.RawFileSystem.Forget(node, held)
	}
}

func (k *kernelFS) Lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	if st := k.ensure(cancel, h.NodeId); !st.Ok() {
		return st
	}
	return k.learnt(k.RawFileSystem.Lookup(cancel, h, name, out), out)
}

func (k *kernelFS) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	if st := k.ensure(cancel, in.NodeId); !st.Ok() {
		return st
	}
	if in.Flags_&fuse.FUSE_GETATTR_FH != 0 {
		if ok, _ := k.bridgeHandle(cancel, in.NodeId, &in.Fh_, true); !ok {
			// An inherited read-only handle: its file answers by name.
			in.Flags_ &^= fuse.FUSE_GETATTR_FH
			in.Fh_ = 0
		}
	}
	return k.RawFileSystem.GetAttr(cancel, in, out)
}

func (k *kernelFS) SetAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	if st := k.ensure(cancel, in.NodeId); !st.Ok() {
		return st
	}
	if in.Valid&fuse.FATTR_FH != 0 {
		if ok, st := k.bridgeHandle(cancel, in.NodeId, &in.Fh, false); !ok {
			return st
		}
	}
	return k.RawFileSystem.SetAttr(cancel, in, out)
}

func (k *kernelFS) Mknod(cancel <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	if st := k.ensure(cancel, in.NodeId); !st.Ok() {
		return st
	}
	return k.learnt(k.RawFileSystem.Mknod(cancel, in, name, out), out)
}

func (k *kernelFS) Mkdir(cancel <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	if st := k.ensure(cancel, in.NodeId); !st.Ok() {
		return st
	}
	return k.learnt(k.RawFileSystem.Mkdir(cancel, in, name, out), out)
}

func (k *kernelFS) Unlink(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	if st := k.ensure(cancel, h.NodeId); !st.Ok() {
		return st
	}
	return k.RawFileSystem.Unlink(cancel, h, name)
}

func (k *kernelFS) Rmdir(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	if st := k.ensure(cancel, h.NodeId); !st.Ok() {
		return st
	}
	return k.RawFileSystem.Rmdir(cancel, h, name)
}

func (k *kernelFS) Rename(cancel <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	if st := k.ensure(cancel, in.NodeId, in.Newdir); !st.Ok() {
		return st
	}
	return k.RawFileSystem.Rename(cancel, in, oldName, newName)
}

func (k *kernelFS) Link(cancel <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	if st := k.ensure(cancel, in.NodeId, in.Oldnodeid); !st.Ok() {
		return st
	}
	return k.learnt(k.RawFileSystem.Link(cancel, in, name, out), out)
}

func (k *kernelFS) Symlink(cancel <-chan struct{}, h *fuse.InHeader, target, name string, out *fuse.EntryOut) fuse.Status {
	if st := k.ensure(cancel, h.NodeId); !st.Ok() {
		return st
	}
	return k.learnt(k.RawFileSystem.Symlink(cancel, h, target, name, out), out)
}

func (k *kernelFS) Readlink(cancel <-chan struct{}, h *fuse.InHeader) ([]byte, fuse.Status) {
	if st := k.ensure(cancel, h.NodeId); !st.Ok() {
		return nil, st
	}
	return k.RawFileSystem.Readlink(cancel, h)
}

func (k *kernelFS) Access(cancel <-chan struct{}, in *fuse.AccessIn) fuse.Status {
	if st := k.ensure(cancel, in.NodeId); !st.Ok() {
		return st
	}
	return k.RawFileSystem.Access(cancel, in)
}

func (k *kernelFS) StatFs(cancel <-chan struct{}, h *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	if st := k.ensure(cancel, h.NodeId); !st.Ok() {
		return st
	}
	return k.RawFileSystem.StatFs(cancel, h, out)
}

func (k *kernelFS) Statx(cancel <-chan struct{}, in *fuse.StatxIn, out *fuse.StatxOut) fuse.Status {
	if st := k.ensure(cancel, in.NodeId); !st.Ok() {
		return st
	}
	if in.GetattrFlags&fuse.FUSE_GETATTR_FH != 0 {
		if ok, _ := k.bridgeHandle(cancel, in.NodeId, &in.Fh, true); !ok {
			in.GetattrFlags &^= fuse.FUSE_GETATTR_FH
			in.Fh = 0
		}
	}
	return k.RawFileSystem.Statx(cancel, in, out)
}

func (k *kernelFS) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	k.dropStaleWriter(in.Unique)
	if st := k.ensure(cancel, in.NodeId); !st.Ok() {
		return st
	}
	st := k.learnt(k.RawFileSystem.Create(cancel, in, name, out), &out.EntryOut)
	if st.Ok() {
		out.Fh = k.kernelHandle(out.Fh, in.Flags, false)
		k.opened(out.Fh, out.NodeId, in.Unique)
	}
	return st
}

func (k *kernelFS) Tmpfile(cancel <-chan struct{}, in *fuse.CreateIn, out *fuse.CreateOut) fuse.Status {
	return fuse.ENOSYS
}

func (k *kernelFS) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	k.dropStaleWriter(in.Unique)
	if st := k.ensure(cancel, in.NodeId); !st.Ok() {
		return st
	}
	st := k.RawFileSystem.Open(cancel, in, out)
	if st.Ok() {
		out.Fh = k.kernelHandle(out.Fh, in.Flags, false)
		k.opened(out.Fh, in.NodeId, in.Unique)
	}
	return st
}

// opened records a writable handle before the kernel is given it.
func (k *kernelFS) opened(fh, node, unique uint64) {
	if fh&fhAccMode != syscall.O_RDONLY {
		k.writers.opened(writer{fh: fh, node: node, unique: unique})
	}
}

// dropStaleWriter releases the inherited writer that the open sent again
// as unique would have made: the kernel never had it (see writers).
func (k *kernelFS) dropStaleWriter(unique uint64) {
	if !k.adopted {
		return
	}
	if e, ok := k.writers.stale(unique); ok {
		k.Release(nil, &fuse.ReleaseIn{InHeader: fuse.InHeader{NodeId: e.node}, Fh: e.fh})
	}
}

// resumeWriters reopens, before this process answers anything, every
// handle the kernel holds open for writing from the processes before it
// (see writers).
func (k *kernelFS) resumeWriters() {
	inherited := k.writers.load()
	if len(inherited) > 0 {
		k.writers.c.log.Info("reopening the files the kernel holds open for writing", "count", len(inherited))
	}
	for _, e := range inherited {
		fh := e.fh
		ok, st := k.bridgeHandle(nil, e.node, &fh, false)
		switch {
		case ok:
		case st == fuse.Status(syscall.ESTALE) || st == fuse.ENOENT:
			// Removed while open: nothing of it is kept.
			k.writers.released(e.fh)
		default:
			k.writers.c.log.Warn("a file open for writing across the takeover could not be reopened; it is reopened at its next request", "inode", e.node, "status", st)
		}
	}
}

func (k *kernelFS) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if st := k.ensure(cancel, in.NodeId); !st.Ok() {
		return st
	}
	st := k.RawFileSystem.OpenDir(cancel, in, out)
	if st.Ok() {
		out.Fh = k.kernelHandle(out.Fh, in.Flags, true)
	}
	return st
}

// withHandle runs op once node is held and fh translated.
func (k *kernelFS) withHandle(cancel <-chan struct{}, node uint64, fh *uint64, op func() fuse.Status) fuse.Status {
	if st := k.ensure(cancel, node); !st.Ok() {
		return st
	}
	if ok, st := k.bridgeHandle(cancel, node, fh, false); !ok {
		if st.Ok() {
			st = fuse.EBADF
		}
		return st
	}
	return op()
}

func (k *kernelFS) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	var r fuse.ReadResult
	st := k.withHandle(cancel, in.NodeId, &in.Fh, func() (st fuse.Status) {
		r, st = k.RawFileSystem.Read(cancel, in, buf)
		return st
	})
	return r, st
}

func (k *kernelFS) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	var n uint32
	st := k.withHandle(cancel, in.NodeId, &in.Fh, func() (st fuse.Status) {
		n, st = k.RawFileSystem.Write(cancel, in, data)
		return st
	})
	return n, st
}

func (k *kernelFS) Writev(cancel <-chan struct{}, in *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	var n uint32
	st := k.withHandle(cancel, in.NodeId, &in.Fh, func() (st fuse.Status) {
		n, st = k.RawFileSystem.Writev(cancel, in, data)
		return st
	})
	return n, st
}

func (k *kernelFS) Lseek(cancel <-chan struct{}, in *fuse.LseekIn, out *fuse.LseekOut) fuse.Status {
	return k.withHandle(cancel, in.NodeId, &in.Fh, func() fuse.Status { return k.RawFileSystem.Lseek(cancel, in, out) })
}

func (k *kernelFS) GetLk(cancel <-chan struct{}, in *fuse.LkIn, out *fuse.LkOut) fuse.Status {
	return k.withHandle(cancel, in.NodeId, &in.Fh, func() fuse.Status { return k.RawFileSystem.GetLk(cancel, in, out) })
}

func (k *kernelFS) SetLk(cancel <-chan struct{}, in *fuse.LkIn) fuse.Status {
	return k.withHandle(cancel, in.NodeId, &in.Fh, func() fuse.Status { return k.RawFileSystem.SetLk(cancel, in) })
}

func (k *kernelFS) SetLkw(cancel <-chan struct{}, in *fuse.LkIn) fuse.Status {
	return k.withHandle(cancel, in.NodeId, &in.Fh, func() fuse.Status { return k.RawFileSystem.SetLkw(cancel, in) })
}

func (k *kernelFS) Ioctl(cancel <-chan struct{}, in *fuse.IoctlIn, inbuf []byte, out *fuse.IoctlOut, outbuf []byte) fuse.Status {
	return k.withHandle(cancel, in.NodeId, &in.Fh, func() fuse.Status {
		return k.RawFileSystem.Ioctl(cancel, in, inbuf, out, outbuf)
	})
}

func (k *kernelFS) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	if st := k.ensure(cancel, in.NodeId); !st.Ok() {
		return st
	}
	if ok, st := k.bridgeHandle(cancel, in.NodeId, &in.Fh, true); !ok {
		return st
	}
	return k.RawFileSystem.Flush(cancel, in)
}

func (k *kernelFS) Fsync(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	return k.withHandle(cancel, in.NodeId, &in.Fh, func() fuse.Status { return k.RawFileSystem.Fsync(cancel, in) })
}

func (k *kernelFS) Fallocate(cancel <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	return k.withHandle(cancel, in.NodeId, &in.Fh, func() fuse.Status { return k.RawFileSystem.Fallocate(cancel, in) })
}

func (k *kernelFS) CopyFileRange(cancel <-chan struct{}, in *fuse.CopyFileRangeIn) (uint32, fuse.Status) {
	if st := k.ensure(cancel, in.NodeId, in.NodeIdOut); !st.Ok() {
		return 0, st
	}
	if ok, st := k.bridgeHandle(cancel, in.NodeId, &in.FhIn, false); !ok {
		return 0, st
	}
	if ok, st := k.bridgeHandle(cancel, in.NodeIdOut, &in.FhOut, false); !ok {
		return 0, st
	}
	return k.RawFileSystem.CopyFileRange(cancel, in)
}

func (k *kernelFS) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return k.withHandle(cancel, in.NodeId, &in.Fh, func() fuse.Status { return k.RawFileSystem.ReadDir(cancel, in, out) })
}

func (k *kernelFS) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return k.withHandle(cancel, in.NodeId, &in.Fh, func() fuse.Status { return k.RawFileSystem.ReadDirPlus(cancel, in, out) })
}

func (k *kernelFS) FsyncDir(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	return k.withHandle(cancel, in.NodeId, &in.Fh, func() fuse.Status { return k.RawFileSystem.FsyncDir(cancel, in) })
}

func (k *kernelFS) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	k.release(cancel, in, k.RawFileSystem.Release)
}

func (k *kernelFS) ReleaseDir(in *fuse.ReleaseIn) {
	k.release(nil, in, func(_ <-chan struct{}, in *fuse.ReleaseIn) { k.RawFileSystem.ReleaseDir(in) })
}

// release ends a handle. An inherited read-only one the bridge never
// reopened has nothing to end; a writable one is reopened first, so that
// its release finishes what was written (and owes it to the store).
func (k *kernelFS) release(cancel <-chan struct{}, in *fuse.ReleaseIn, rel func(<-chan struct{}, *fuse.ReleaseIn)) {
	kfh := in.Fh
	if kfh>>fhGenShift == k.gen {
		// Last: until the writer entry is dropped, no open may be given
		// this handle.
		defer k.forgetHandle(kfh)
	}
	if kfh&fhAccMode != syscall.O_RDONLY && kfh&fhDir == 0 {
		// After the release, or after the process dies in it: a
		// RELEASE never answered is sent again.
		defer k.writers.released(kfh)
	}
	if st := k.ensure(cancel, in.NodeId); !st.Ok() {
		return
	}
	if ok, _ := k.bridgeHandle(cancel, in.NodeId, &in.Fh, true); !ok {
		return
	}
	rel(cancel, in)
	if kfh>>fhGenShift != k.gen {
		k.mu.Lock()
		delete(k.reopened, kfh)
		k.mu.Unlock()
	}
}
