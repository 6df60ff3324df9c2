// The cache's errors as errno.

package fs

import (
	"context"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/s3mediafs/s3mediafs/cache"
)

// The store's failures are EIO to the application, whatever network error
// lies beneath; the local disk's own errors pass through.
func TestToErrno(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	for _, c := range []struct {
		err  error
		want syscall.Errno
	}{
		{fmt.Errorf("fetch %q: %w: %w", "p", cache.ErrStore, refused), syscall.EIO},
		{fmt.Errorf("lookup %q: %w", "p", context.Canceled), syscall.EINTR},
		{fmt.Errorf("write: %w", &os.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC}), syscall.ENOSPC},
		{fmt.Errorf("open: %w", cache.ErrNotExist), syscall.ENOENT},
	} {
		if got := toErrno(c.err); got != c.want {
			t.Errorf("toErrno(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
