package fs

import (
	"fmt"
	"log"
	"log/slog"
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

// Mount serves c at dir and returns once the kernel has the mount. The
// caller unmounts with server.Unmount and then waits with server.Wait.
func Mount(dir string, c *cache.Cache, o MountOptions) (*fuse.Server, error) {
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
			MaxBackground:     64,
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
		UID:             o.UID,
		GID:             o.GID,
		RootStableAttr:  &gofs.StableAttr{Ino: rootIno},
		Logger:          log.New(slogWriter{o.Log}, "", 0),
	})
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	return server, nil
}

func durationPtr(d time.Duration) *time.Duration { return &d }

// slogWriter sends go-fuse's log.Logger output to slog.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(b []byte) (int, error) {
	w.log.Debug("fuse: " + string(b))
	return len(b), nil
}
