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

// Create implements gofs.NodeCreater.
func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (_ *gofs.Inode, _ gofs.FileHandle, _ uint32, errno syscall.Errno) {
	defer n.observe("create", time.Now(), &errno)
	p := n.child(name)
	h, a, err := n.c.Create(ctx, p, int(flags), n.newFile(ctx, mode, false))
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
	a, err := n.c.Mkdir(ctx, n.child(name), n.newFile(ctx, mode, true))
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
	rename := n.c.Rename
	switch flags {
	case 0:
	case unixRenameNoReplace:
		// The kernel refuses a target it knows of; one it has not
		// looked up (another process's, just made) is refused here.
		rename = n.c.RenameNoReplace
	default:
		return syscall.EINVAL
	}
	if err := rename(ctx, oldp, newp); err != nil {
		return n.fail("rename", oldp, err)
	}
	return 0
}

// Mknod implements gofs.NodeMknoder: FIFOs, sockets and device nodes live
// in the index only; they have no bytes and are never uploaded.
func (n *node) Mknod(ctx context.Context, name string, mode, dev uint32, out *fuse.EntryOut) (_ *gofs.Inode, errno syscall.Errno) {
	defer n.observe("mknod", time.Now(), &errno)
	kind := mode & syscall.S_IFMT
	if kind == syscall.S_IFREG || kind == 0 {
		// mknod(2) of a regular file: an empty file, as creat would make.
		a, errno := n.createEmpty(ctx, name, mode)
		if errno != 0 {
			return nil, errno
		}
		return n.entry(ctx, a, out), 0
	}
	a, err := n.c.Mknod(ctx, n.child(name), kind, dev, n.newFile(ctx, mode, false))
	if err != nil {
		return nil, n.fail("mknod", n.child(name), err)
	}
	return n.entry(ctx, a, out), 0
}

// createEmpty makes the empty regular file name, failing if it exists.
func (n *node) createEmpty(ctx context.Context, name string, mode uint32) (cache.Attr, syscall.Errno) {
	p := n.child(name)
	h, a, err := n.c.Create(ctx, p, os.O_RDWR|os.O_CREATE|os.O_EXCL, n.newFile(ctx, mode, false))
	if err != nil {
		return cache.Attr{}, n.fail("mknod", p, err)
	}
	err = h.Flush(ctx)
	h.Release(ctx)
	if err != nil {
		return cache.Attr{}, n.fail("mknod", p, err)
	}
	return a, 0
}

// Symlink implements gofs.NodeSymlinker. The link is an object holding
// its target, marked by its mode as s3fs marks one, so that s3fs and
// another host read it back as a link.
func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (_ *gofs.Inode, errno syscall.Errno) {
	defer n.observe("symlink", time.Now(), &errno)
	a, err := n.c.Symlink(ctx, n.child(name), target, n.newFile(ctx, 0o777, false))
	if err != nil {
		return nil, n.fail("symlink", n.child(name), err)
	}
	return n.entry(ctx, a, out), 0
}

// Readlink implements gofs.NodeReadlinker.
func (n *node) Readlink(ctx context.Context) (_ []byte, errno syscall.Errno) {
	defer n.observe("readlink", time.Now(), &errno)
	target, err := n.c.Readlink(ctx, n.path())
	if err != nil {
		return nil, n.fail("readlink", n.path(), err)
	}
	return []byte(target), 0
}

// Link implements gofs.NodeLinker: hard links are not supported (an
// object has one key), and EPERM says so as many network filesystems do.
func (n *node) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (_ *gofs.Inode, errno syscall.Errno) {
	defer n.observe("link", time.Now(), &errno)
	return nil, syscall.EPERM
}
