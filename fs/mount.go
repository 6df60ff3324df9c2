package fs

import (
	"fmt"
	"log"
	"log/slog"
	"os"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/s3mediafs/s3mediafs/cache"
)

// MountOptions adds the mount-level settings to Options.
type MountOptions struct {
	Options
	AllowOther bool   // let users other than the mounter (Synapse) in
	FsName     string // shown as the source in /proc/mounts
	Debug      bool   // log every FUSE request
}

// Server is a mount being served. The caller unmounts with Unmount and
// then waits with Wait.
type Server struct {
	*fuse.Server
	// Passthrough reports whether cached files are read and written by the
	// kernel directly; PassthroughOff says why not, when asked for.
	Passthrough    bool
	PassthroughOff error
}

// Mount serves c at dir and returns once the kernel has the mount.
func Mount(dir string, c *cache.Cache, o MountOptions) (*Server, error) {
	if o.FileMode == 0 {
		o.FileMode = 0o644
	}
	if o.DirMode == 0 {
		o.DirMode = 0o755
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.FsName == "" {
		o.FsName = "s3mediafs"
	}
	opts := o.Options
	opts.mode = &ioMode{ready: make(chan struct{})}
	root := &node{c: c, opts: &opts}
	rootIno := c.RootAttr().Ino
	server, err := gofs.Mount(dir, root, &gofs.Options{
		MountOptions: fuse.MountOptions{
			DirectMount:       true,
			DirectMountStrict: false,
			AllowOther:        o.AllowOther,
			FsName:            o.FsName,
			Name:              "s3mediafs",
			Debug:             o.Debug,
			DisableXAttrs:     true,
			// Without READDIRPLUS a listing asks nothing per name: with
			// it, go-fuse looks every listed name up, and a name whose
			// object metadata is not read yet would cost a HEAD each.
			DisableReadDirPlus: true,
			MaxBackground:      64,
			// 1 MiB requests: a quarter of the round trips of the 128 KiB
			// default for large files.
			MaxWrite:     1 << 20,
			MaxReadAhead: 1 << 20,
			Options:      []string{"default_permissions"},
			Logger:       log.New(slogWriter{o.Log}, "", 0),
		},
		EntryTimeout:    durationPtr(o.EntryTimeout),
		AttrTimeout:     durationPtr(o.AttrTimeout),
		NegativeTimeout: durationPtr(o.NegativeTimeout),
		// Owners and permission bits come from the index, where 0 is a
		// real value (root, or mode 0 as `mv -f` makes): go-fuse must
		// not replace them with its defaults.
		NullPermissions: true,
		RootStableAttr:  &gofs.StableAttr{Ino: rootIno},
		Logger:          log.New(slogWriter{o.Log}, "", 0),
	})
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	s := &Server{Server: server}
	if o.Passthrough {
		s.PassthroughOff = probePassthrough(server, c.TempDir())
		s.Passthrough = s.PassthroughOff == nil
	}
	opts.mode.passthrough.Store(s.Passthrough)
	close(opts.mode.ready)
	return s, nil
}

// probePassthrough registers a file of the cache directory as a backing
// file, as a passthrough open would, and unregisters it. It fails where
// the kernel is older than 6.9, lacks CONFIG_FUSE_PASSTHROUGH, the daemon
// lacks CAP_SYS_ADMIN, or the cache directory is itself on a stacked
// filesystem too deep for passthrough.
func probePassthrough(server *fuse.Server, scratchDir string) error {
	if server.KernelSettings().Flags64()&fuse.CAP_PASSTHROUGH == 0 {
		return fmt.Errorf("the kernel does not offer FUSE passthrough (Linux ≥ 6.9 with CONFIG_FUSE_PASSTHROUGH)")
	}
	f, err := os.CreateTemp(scratchDir, "passthrough-probe-")
	if err != nil {
		return fmt.Errorf("probe file: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	id, errno := server.RegisterBackingFd(&fuse.BackingMap{Fd: int32(f.Fd())})
	if errno != 0 {
		return fmt.Errorf("register a backing file: %w (passthrough needs CAP_SYS_ADMIN)", errno)
	}
	if errno := server.UnregisterBackingFd(id); errno != 0 {
		return fmt.Errorf("unregister a backing file: %w", errno)
	}
	return nil
}

func durationPtr(d time.Duration) *time.Duration { return &d }

// slogWriter sends go-fuse's log.Logger output to slog.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(b []byte) (int, error) {
	w.log.Debug("fuse: " + string(b))
	return len(b), nil
}
