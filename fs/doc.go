// Package fs is the FUSE face of the cache: go-fuse node and file-handle
// types that turn each operation into a cache call, and one errno mapper
// (errno.go) that turns the cache's errors into answers the kernel
// understands.
//
// # Where things live
//
//	mount.go    Mount: options, the passthrough probe, the server
//	node.go     lookup, getattr, setattr, create, mkdir, unlink, rmdir, rename, readdir
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
// Directory listings are READDIRPLUS: each entry comes with its
// attributes, answered from the index.
package fs
