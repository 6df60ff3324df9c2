package fs

import (
	"context"
	"errors"
	"syscall"

	"github.com/s3mediafs/s3mediafs/cache"
)

// toErrno is the one place errors become errno values. go-fuse's own
// ToErrno matches by identity and would turn a wrapped error into ENOSYS.
func toErrno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var errno syscall.Errno
	switch {
	case errors.Is(err, cache.ErrNotExist):
		return syscall.ENOENT
	case errors.Is(err, cache.ErrExist):
		return syscall.EEXIST
	case errors.Is(err, cache.ErrNotEmpty):
		return syscall.ENOTEMPTY
	case errors.Is(err, cache.ErrIsDir):
		return syscall.EISDIR
	case errors.Is(err, cache.ErrNotDir):
		return syscall.ENOTDIR
	case errors.Is(err, cache.ErrNameTooLong):
		return syscall.ENAMETOOLONG
	case errors.Is(err, cache.ErrNotUTF8):
		return syscall.EILSEQ
	case errors.Is(err, cache.ErrInvalid):
		return syscall.EINVAL
	case errors.Is(err, cache.ErrCrossDevice):
		return syscall.EXDEV
	case errors.Is(err, cache.ErrStore):
		// Whatever network error lies beneath, the application's read
		// or close failed for want of the store: EIO, not ECONNREFUSED.
		return syscall.EIO
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	case errors.As(err, &errno):
		// The local disk's own answer (ENOSPC, EDQUOT, EROFS…) passes through.
		return errno
	}
	return syscall.EIO
}
