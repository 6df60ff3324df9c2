package fs

import (
	"context"
	"log/slog"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/s3mediafs/s3mediafs/cache"
)

// Options says how files look to the kernel and how long it may cache them.
type Options struct {
	// Observe, if set, is told of every FUSE operation served: its name,
	// duration and result (0 for success). Metrics hang off it.
	Observe         func(op string, d time.Duration, errno syscall.Errno)
	UID, GID        uint32
	FileMode        uint32 // permission bits of every file; default 0644
	DirMode         uint32 // permission bits of every directory; default 0755
	EntryTimeout    time.Duration
	AttrTimeout     time.Duration
	NegativeTimeout time.Duration
	Log             *slog.Logger

	// Passthrough asks for FUSE passthrough (Linux ≥ 6.9, root): the
	// kernel reads and writes cached files without the daemon. Mount
	// turns it off, and says why, where the kernel does not allow it.
	Passthrough bool

	// MountOwnsNewFiles gives new files the mount's UID and GID rather
	// than the creating process's (the owner=mount option).
	MountOwnsNewFiles bool

	mode *ioMode // set by Mount

	// releaseDelay slows the release of daemon-served opens, for a test
	// that needs it to end after a later open began.
	releaseDelay time.Duration
}

// ioMode says whether opens are handed to the kernel (passthrough).
type ioMode struct {
	// ready is closed once Mount knows whether passthrough works; opens
	// wait for it so that no inode mixes both kinds of open.
	ready       chan struct{}
	passthrough atomic.Bool
}

// passthrough reports whether opens are handed to the kernel.
func (o *Options) passthrough() bool {
	if o.mode == nil {
		return false
	}
	<-o.mode.ready
	return o.mode.passthrough.Load()
}

// node is a file or directory of the mount. Its path is derived from its
// place in go-fuse's tree, so a rename needs no bookkeeping here.
type node struct {
	gofs.Inode
	c    *cache.Cache
	opts *Options

	// daemonServed counts this inode's opens served by the daemon under
	// passthrough whose release go-fuse may not have finished (see
	// handle.Release); while it is above zero, no open gets passthrough.
	daemonServed atomic.Int32
}

var (
	_ gofs.NodeLookuper   = (*node)(nil)
	_ gofs.NodeGetattrer  = (*node)(nil)
	_ gofs.NodeSetattrer  = (*node)(nil)
	_ gofs.NodeOpener     = (*node)(nil)
	_ gofs.NodeCreater    = (*node)(nil)
	_ gofs.NodeMkdirer    = (*node)(nil)
	_ gofs.NodeUnlinker   = (*node)(nil)
	_ gofs.NodeRmdirer    = (*node)(nil)
	_ gofs.NodeRenamer    = (*node)(nil)
	_ gofs.NodeReaddirer  = (*node)(nil)
	_ gofs.NodeStatfser   = (*node)(nil)
	_ gofs.NodeFsyncer    = (*node)(nil)
	_ gofs.NodeMknoder    = (*node)(nil)
	_ gofs.NodeSymlinker  = (*node)(nil)
	_ gofs.NodeReadlinker = (*node)(nil)
	_ gofs.NodeLinker     = (*node)(nil)
)

// path is the node's path in the store's namespace. During a directory
// rename that is still moving records, a name resolved before it maps to
// the record's place now (cache.Resolve).
func (n *node) path() string { return n.c.Resolve(n.Path(nil)) }

// observe reports an operation that started at start; deferred with a
// pointer to the method's named errno result.
func (n *node) observe(op string, start time.Time, errno *syscall.Errno) {
	if n.opts.Observe != nil {
		n.opts.Observe(op, time.Since(start), *errno)
	}
}

func (n *node) child(name string) string {
	if p := n.path(); p != "" {
		return p + "/" + name
	}
	return name
}

func (n *node) fill(a cache.Attr, out *fuse.Attr) {
	out.Ino = a.Ino
	perm := n.opts.FileMode
	if a.Dir {
		perm = n.opts.DirMode
	}
	if a.ModeSet {
		perm = a.Mode
	}
	out.Mode = fileType(a) | perm
	if a.Dir {
		out.Nlink = 2
	} else {
		out.Nlink = 1
		if a.Unlinked {
			out.Nlink = 0
		}
		out.Size = uint64(a.Size)
		out.Blocks = (out.Size + 511) / 512
		out.Rdev = a.Rdev
	}
	out.Blksize = 4096
	out.Uid, out.Gid = n.opts.UID, n.opts.GID
	if a.Owner != nil {
		out.Uid, out.Gid = a.Owner.UID, a.Owner.GID
	}
	if !a.MTime.IsZero() {
		out.SetTimes(&a.ATime, &a.MTime, &a.CTime)
	}
}

// fileType is the S_IFMT bits of a.
func fileType(a cache.Attr) uint32 {
	switch {
	case a.Dir:
		return syscall.S_IFDIR
	case a.Kind != 0:
		return a.Kind
	}
	return syscall.S_IFREG
}

func (n *node) entry(ctx context.Context, a cache.Attr, out *fuse.EntryOut) *gofs.Inode {
	n.fill(a, &out.Attr)
	out.SetEntryTimeout(n.opts.EntryTimeout)
	out.SetAttrTimeout(n.opts.AttrTimeout)
	if a.Provisional {
		// Owner and mode are not known yet: with the attributes already
		// stale, the kernel asks (GETATTR) before a permission check or
		// a stat, and never decides on the defaults.
		out.SetAttrTimeout(0)
	}
	return n.NewInode(ctx, &node{c: n.c, opts: n.opts}, gofs.StableAttr{Mode: fileType(a), Ino: a.Ino})
}

// newFile says who makes a file here and with which bits: the calling
// process's user and group (or the mount's, with owner=mount), and, in a
// setgid directory, that directory's group, which a new directory
// inherits with the setgid bit, as Linux filesystems do.
func (n *node) newFile(ctx context.Context, mode uint32, dir bool) cache.NewFile {
	nf := cache.NewFile{Mode: mode & 0o7777}
	caller, ok := fuse.FromContext(ctx)
	if !ok || n.opts.MountOwnsNewFiles {
		nf.Owner = &cache.Owner{UID: n.opts.UID, GID: n.opts.GID}
		return nf
	}
	o := cache.Owner{UID: caller.Uid, GID: caller.Gid}
	if a, err := n.c.Stat(ctx, n.path()); err == nil {
		var pa fuse.Attr
		n.fill(a, &pa)
		if pa.Mode&syscall.S_ISGID != 0 {
			o.GID = pa.Gid
			if dir {
				nf.Mode |= syscall.S_ISGID
			}
		}
	}
	nf.Owner = &o
	return nf
}

// Lookup implements gofs.NodeLookuper.
func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (_ *gofs.Inode, errno syscall.Errno) {
	defer n.observe("lookup", time.Now(), &errno)
	a, err := n.c.Lookup(ctx, n.child(name))
	if err == nil && a.Provisional && n.sticky(ctx) {
		// Who may remove a name from a sticky directory depends on the
		// file's owner, which the kernel checks without asking again.
		a, err = n.c.Stat(ctx, n.child(name))
	}
	if err != nil {
		if errno := toErrno(err); errno == syscall.ENOENT {
			out.SetEntryTimeout(n.opts.NegativeTimeout)
			return nil, errno
		}
		return nil, n.fail("lookup", n.child(name), err)
	}
	return n.entry(ctx, a, out), 0
}

// sticky reports whether this directory has the sticky bit (or its
// attributes cannot be read, which counts as having it).
func (n *node) sticky(ctx context.Context) bool {
	a, err := n.c.Stat(ctx, n.path())
	if err != nil {
		return true
	}
	var da fuse.Attr
	n.fill(a, &da)
	return da.Mode&syscall.S_ISVTX != 0
}

// fail logs an unexpected error and returns its errno. Expected answers
// (ENOENT, EEXIST, ENOTEMPTY…) are not logged.
func (n *node) fail(op, p string, err error) syscall.Errno {
	errno := toErrno(err)
	if errno == syscall.EIO || errno == syscall.ENOSPC {
		n.opts.Log.Warn("operation failed", "op", op, "path", p, "errno", errno.Error(), "err", err)
	}
	return errno
}

// Getattr implements gofs.NodeGetattrer.
func (n *node) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) (errno syscall.Errno) {
	defer n.observe("getattr", time.Now(), &errno)
	var a cache.Attr
	if h, ok := fileOf(f); ok {
		// fstat: the open file answers, even after its name is gone.
		a = h.h.Attr()
	} else {
		var err error
		if a, err = n.c.Stat(ctx, n.path()); err != nil {
			return n.fail("getattr", n.path(), err)
		}
	}
	n.fill(a, &out.Attr)
	out.SetTimeout(n.opts.AttrTimeout)
	return 0
}

// Setattr implements gofs.NodeSetattrer: size, owner, permission bits
// and times. The kernel has checked the caller may (default_permissions),
// and turned the clearing of setuid and setgid on write and chown into a
// mode change.
func (n *node) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) (errno syscall.Errno) {
	defer n.observe("setattr", time.Now(), &errno)
	if !n.IsRoot() {
		// The name may have been renamed over since the kernel resolved
		// it: change nothing of another file.
		if ino, ok := n.c.InodeOf(n.path()); ok && ino != n.StableAttr().Ino {
			return syscall.ENOENT
		}
	}
	var ch cache.AttrChange
	if mode, ok := in.GetMode(); ok {
		ch.Mode = &mode
	}
	if t, ok := in.GetMTime(); ok {
		ch.MTime = &t
	}
	if t, ok := in.GetATime(); ok {
		ch.ATime = &t
	}
	uid, setUID := in.GetUID()
	gid, setGID := in.GetGID()
	if setUID || setGID {
		var cur fuse.AttrOut
		if errno := n.Getattr(ctx, f, &cur); errno != 0 {
			return errno
		}
		o := cache.Owner{UID: cur.Uid, GID: cur.Gid}
		if setUID {
			o.UID = uid
		}
		if setGID {
			o.GID = gid
		}
		ch.Owner = &o
	}
	if ch != (cache.AttrChange{}) {
		if _, err := n.c.SetAttr(ctx, n.path(), ch); err != nil {
			return n.fail("setattr", n.path(), err)
		}
	}
	if size, ok := in.GetSize(); ok {
		var err error
		if h, isHandle := fileOf(f); isHandle && h.writable {
			err = h.h.Truncate(ctx, int64(size))
		} else {
			err = n.c.Truncate(ctx, n.path(), int64(size))
		}
		if err != nil {
			return n.fail("truncate", n.path(), err)
		}
	}
	return n.Getattr(ctx, f, out)
}

// Open implements gofs.NodeOpener.
func (n *node) Open(ctx context.Context, flags uint32) (_ gofs.FileHandle, _ uint32, errno syscall.Errno) {
	defer n.observe("open", time.Now(), &errno)
	reopen := flags&reopenFlag != 0 && flags&syscall.O_ACCMODE != syscall.O_RDONLY
	flags &^= reopenFlag
	open := n.c.OpenInode
	if reopen {
		// The process before wrote through this handle to the data file;
		// its close must record whatever the file holds now.
		open = n.c.ReopenWriter
	}
	h, err := open(ctx, n.path(), n.StableAttr().Ino, int(flags))
	if err != nil {
		return nil, 0, n.fail("open", n.path(), err)
	}
	fh, fuseFlags, err := n.open(ctx, h, int(flags))
	if err != nil {
		h.Release(ctx)
		return nil, 0, n.fail("open", n.path(), err)
	}
	return fh, fuseFlags, 0
}

// unixRenameNoReplace is RENAME_NOREPLACE from renameat2(2).
const unixRenameNoReplace = 1

// Readdir implements gofs.NodeReaddirer.
func (n *node) Readdir(ctx context.Context) (_ gofs.DirStream, errno syscall.Errno) {
	defer n.observe("readdir", time.Now(), &errno)
	entries, err := n.c.Readdir(ctx, n.path())
	if err != nil {
		return nil, n.fail("readdir", n.path(), err)
	}
	out := make([]fuse.DirEntry, 0, len(entries))
	for _, e := range entries {
		out = append(out, fuse.DirEntry{Name: e.Name, Mode: fileType(cache.Attr{Dir: e.Dir, Kind: e.Kind}), Ino: e.Ino})
	}
	return gofs.NewListDirStream(out), 0
}

// Statfs implements gofs.NodeStatfser with the cache filesystem's figures:
// that disk is what fills up when the store falls behind.
func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) (errno syscall.Errno) {
	defer n.observe("statfs", time.Now(), &errno)
	var st syscall.Statfs_t
	if err := syscall.Statfs(n.c.Dir(), &st); err != nil {
		return toErrno(err)
	}
	out.FromStatfsT(&st)
	return 0
}

// Fsync implements gofs.NodeFsyncer.
func (n *node) Fsync(ctx context.Context, f gofs.FileHandle, flags uint32) (errno syscall.Errno) {
	defer n.observe("fsync", time.Now(), &errno)
	if h, ok := fileOf(f); ok {
		return h.Fsync(ctx, flags)
	}
	if err := n.c.Sync(); err != nil {
		return n.fail("fsync", n.path(), err)
	}
	return 0
}
