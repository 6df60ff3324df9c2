package fs

import (
	"context"
	"log/slog"
	"os"
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
	_ gofs.NodeLookuper  = (*node)(nil)
	_ gofs.NodeGetattrer = (*node)(nil)
	_ gofs.NodeSetattrer = (*node)(nil)
	_ gofs.NodeOpener    = (*node)(nil)
	_ gofs.NodeCreater   = (*node)(nil)
	_ gofs.NodeMkdirer   = (*node)(nil)
	_ gofs.NodeUnlinker  = (*node)(nil)
	_ gofs.NodeRmdirer   = (*node)(nil)
	_ gofs.NodeRenamer   = (*node)(nil)
	_ gofs.NodeReaddirer = (*node)(nil)
	_ gofs.NodeStatfser  = (*node)(nil)
	_ gofs.NodeFsyncer   = (*node)(nil)
)

func (n *node) path() string { return n.Path(nil) }

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
	if a.Dir {
		out.Mode = syscall.S_IFDIR | orDefault(a.Mode, n.opts.DirMode)
		out.Nlink = 2
	} else {
		out.Mode = syscall.S_IFREG | orDefault(a.Mode, n.opts.FileMode)
		out.Nlink = 1
		if a.Unlinked {
			out.Nlink = 0
		}
		out.Size = uint64(a.Size)
		out.Blocks = (out.Size + 511) / 512
	}
	out.Blksize = 4096
	out.Uid, out.Gid = n.opts.UID, n.opts.GID
	if a.Owner != nil {
		out.Uid, out.Gid = a.Owner.UID, a.Owner.GID
	}
	if !a.MTime.IsZero() {
		out.SetTimes(&a.MTime, &a.MTime, &a.MTime)
	}
}

func orDefault(mode, def uint32) uint32 {
	if mode == 0 {
		return def
	}
	return mode
}

func (n *node) entry(ctx context.Context, a cache.Attr, out *fuse.EntryOut) *gofs.Inode {
	n.fill(a, &out.Attr)
	out.SetEntryTimeout(n.opts.EntryTimeout)
	out.SetAttrTimeout(n.opts.AttrTimeout)
	mode := uint32(syscall.S_IFREG)
	if a.Dir {
		mode = syscall.S_IFDIR
	}
	return n.NewInode(ctx, &node{c: n.c, opts: n.opts}, gofs.StableAttr{Mode: mode, Ino: a.Ino})
}

// Lookup implements gofs.NodeLookuper.
func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (_ *gofs.Inode, errno syscall.Errno) {
	defer n.observe("lookup", time.Now(), &errno)
	a, err := n.c.Stat(ctx, n.child(name))
	if err != nil {
		if errno := toErrno(err); errno == syscall.ENOENT {
			out.SetEntryTimeout(n.opts.NegativeTimeout)
			return nil, errno
		}
		return nil, n.fail("lookup", n.child(name), err)
	}
	return n.entry(ctx, a, out), 0
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

// Setattr implements gofs.NodeSetattrer. Size, permission bits and the
// modification time are kept; owners are fixed by the mount's options.
func (n *node) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) (errno syscall.Errno) {
	defer n.observe("setattr", time.Now(), &errno)
	mode, setMode := in.GetMode()
	mtime, setMTime := in.GetMTime()
	uid, setUID := in.GetUID()
	gid, setGID := in.GetGID()
	if (setUID || setGID) && n.path() == "" {
		// The kernel checked the caller may (default_permissions).
		cur := n.c.RootAttr()
		o := cache.Owner{UID: n.opts.UID, GID: n.opts.GID}
		if cur.Owner != nil {
			o = *cur.Owner
		}
		if setUID {
			o.UID = uid
		}
		if setGID {
			o.GID = gid
		}
		if _, err := n.c.SetRootOwner(o); err != nil {
			return n.fail("chown", "/", err)
		}
	}
	if setMode || setMTime {
		var mp *uint32
		var tp *time.Time
		if setMode {
			mp = &mode
		}
		if setMTime {
			tp = &mtime
		}
		if _, err := n.c.SetAttr(ctx, n.path(), mp, tp); err != nil {
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
	h, err := n.c.OpenFile(ctx, n.path(), int(flags))
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

// Create implements gofs.NodeCreater.
func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (_ *gofs.Inode, _ gofs.FileHandle, _ uint32, errno syscall.Errno) {
	defer n.observe("create", time.Now(), &errno)
	p := n.child(name)
	h, a, err := n.c.Create(ctx, p, int(flags), mode)
	if err != nil {
		return nil, nil, 0, n.fail("create", p, err)
	}
	fh, fuseFlags, err := n.open(ctx, h, int(flags)|os.O_RDWR)
	if err != nil {
		h.Release(ctx)
		return nil, nil, 0, n.fail("create", p, err)
	}
	return n.entry(ctx, a, out), fh, fuseFlags, 0
}

// Mkdir implements gofs.NodeMkdirer.
func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (_ *gofs.Inode, errno syscall.Errno) {
	defer n.observe("mkdir", time.Now(), &errno)
	a, err := n.c.Mkdir(ctx, n.child(name), mode)
	if err != nil {
		return nil, n.fail("mkdir", n.child(name), err)
	}
	return n.entry(ctx, a, out), 0
}

// Unlink implements gofs.NodeUnlinker.
func (n *node) Unlink(ctx context.Context, name string) (errno syscall.Errno) {
	defer n.observe("unlink", time.Now(), &errno)
	if err := n.c.Unlink(ctx, n.child(name)); err != nil {
		return n.fail("unlink", n.child(name), err)
	}
	return 0
}

// Rmdir implements gofs.NodeRmdirer.
func (n *node) Rmdir(ctx context.Context, name string) (errno syscall.Errno) {
	defer n.observe("rmdir", time.Now(), &errno)
	if err := n.c.Rmdir(ctx, n.child(name)); err != nil {
		return n.fail("rmdir", n.child(name), err)
	}
	return 0
}

// Rename implements gofs.NodeRenamer. RENAME_NOREPLACE is honoured;
// RENAME_EXCHANGE is not supported.
func (n *node) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) (errno syscall.Errno) {
	defer n.observe("rename", time.Now(), &errno)
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	oldp, newp := n.child(name), np.child(newName)
	switch flags {
	case 0:
	case unixRenameNoReplace:
		if _, err := n.c.Stat(ctx, newp); err == nil {
			return syscall.EEXIST
		}
	default:
		return syscall.EINVAL
	}
	if err := n.c.Rename(ctx, oldp, newp); err != nil {
		return n.fail("rename", oldp, err)
	}
	return 0
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
		mode := uint32(syscall.S_IFREG)
		if e.Dir {
			mode = syscall.S_IFDIR
		}
		out = append(out, fuse.DirEntry{Name: e.Name, Mode: mode, Ino: e.Ino})
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
