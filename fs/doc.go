// Package fs is the FUSE face of the cache: go-fuse node and file-handle
// types that turn each operation into a cache call, and one errno mapper
// (errno.go) that turns the cache's errors into answers the kernel
// understands.
//
// # Where things live
//
//	mount.go    Mount and Adopt: options, the passthrough probe, the server
//	conn.go     the /dev/fuse connection: mount(2), INIT, the read loop, suspend
//	kernelfs.go between the kernel and go-fuse's bridge: handles and nodes
//	            a later process can resolve
//	handover.go the descriptors and state another process goes on with
//	backing.go  passthrough registrations, shared with later processes
//	mountinfo.go the mount table, read without asking the mount
//	node.go     lookup, getattr, setattr, open, readdir
//	namespace.go create, mkdir, mknod, symlink, unlink, rmdir, rename
//	handle.go   open files: passthrough hand-over, read, write, flush, release
//	errno.go    cache errors to errnos
//
// # Passthrough
//
// Cached files are served by FUSE passthrough: an open hands the kernel
// the cache's data file, and reads and writes go from the kernel to the
// cache filesystem without the daemon. The kernel refuses a passthrough
// open of an inode another open uses through the page cache, so no open
// under passthrough uses the page cache. A read-only open of a file only
// the store has is served by the daemon with direct I/O, from the bytes as
// they arrive, while the fetch makes the file local for the opens after
// it. go-fuse counts one backing reference per inode and drops one at
// every release, passthrough or not, so an inode with a daemon-served open
// not yet settled gets no passthrough open (handle.Release).
//
// # Handing the mount over
//
// The kernel keeps a connection while any process holds its descriptor,
// so a daemon can stop reading it (Server.Suspend) and another go on
// with it (Adopt): go-fuse's ProtocolServer is given the INIT the kernel
// sent the first, node IDs are the index's inode numbers, and kernelFS
// brings back what the kernel holds from the process before.
//
// Directory listings are plain READDIR (READDIRPLUS is off, see
// fuseOptions): a listing asks nothing per name, and the lookups that
// follow one (ls -l) are answered from the index the listing filled.
package fs
