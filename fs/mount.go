package fs

import (
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

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
// then waits with Wait; or it suspends the connection and hands it to
// another process (Suspend).
type Server struct {
	// Passthrough reports whether cached files are read and written by the
	// kernel directly; PassthroughOff says why not, when asked for.
	Passthrough    bool
	PassthroughOff error
	// Resent reports, for an adopted mount, whether the kernel queued
	// again the requests the process before read and never answered.
	Resent bool

	dir       string
	conn      *conn
	kernel    *kernelFS
	state     *os.File // the memfd of Handover
	closeOnce sync.Once
}

// fuseOptions are the mount's settings as go-fuse's ProtocolServer takes
// them. Every process serving one mount must use the same: the kernel
// negotiated them once, at INIT.
func fuseOptions(o MountOptions) *fuse.MountOptions {
	return &fuse.MountOptions{
		Name:          "s3mediafs",
		Debug:         o.Debug,
		DisableXAttrs: true,
		// Without READDIRPLUS a listing asks nothing per name: with
		// it, go-fuse looks every listed name up, and a name whose
		// object metadata is not read yet would cost a HEAD each.
		DisableReadDirPlus: true,
		MaxBackground:      64,
		// 1 MiB requests: a quarter of the round trips of the 128 KiB
		// default for large files.
		MaxWrite:     maxWrite,
		MaxReadAhead: maxWrite,
		// A file being fetched is served with direct I/O (see open), and
		// the kernel refuses a shared mapping of such a file unless told
		// it may: a program that maps what it reads would get ENODEV on
		// a file not cached yet. Its mapping goes through the page cache
		// and FUSE reads; the daemon-served open keeps passthrough opens
		// of that inode off until it is released (Release).
		ExtraCapabilities: fuse.CAP_DIRECT_IO_ALLOW_MMAP,
		Logger:            log.New(slogWriter{o.Log}, "", 0),
	}
}

const maxWrite = 1 << 20

func defaults(o *MountOptions) {
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
}

// newServer builds the node tree over c and the ProtocolServer that
// answers conn's requests.
func newServer(dir string, c *cache.Cache, o MountOptions, cn *conn, gen uint64, adopted bool) (*Server, *Options) {
	opts := o.Options
	opts.mode = &ioMode{ready: make(chan struct{})}
	root := &node{c: c, opts: &opts}
	bridge := gofs.NewNodeFS(root, &gofs.Options{
		EntryTimeout: durationPtr(o.EntryTimeout),
		// No AttrTimeout: go-fuse would put it in place of a zero one,
		// and a lookup answered with attributes not known yet must
		// reach the kernel with zero (node.entry). Every reply that
		// carries attributes sets its own (entry, Getattr).
		NegativeTimeout: durationPtr(o.NegativeTimeout),
		// Owners and permission bits come from the index, where 0 is a
		// real value (root, or mode 0 as `mv -f` makes): go-fuse must
		// not replace them with its defaults.
		NullPermissions: true,
		RootStableAttr:  &gofs.StableAttr{Ino: c.RootAttr().Ino},
		// Node IDs are the index's inode numbers, the same in every
		// process that serves this mount.
		ExternalNodeID:  true,
		ServerCallbacks: callbacks{cn},
		Logger:          log.New(slogWriter{o.Log}, "", 0),
	})
	kernel := newKernelFS(bridge, c, gen, adopted, cn.writers)
	cn.ps = fuse.NewProtocolServer(kernel, fuseOptions(o))
	return &Server{dir: dir, conn: cn, kernel: kernel}, &opts
}

// Mount serves c at dir and returns once the kernel has the mount.
func Mount(dir string, c *cache.Cache, o MountOptions) (*Server, error) {
	defaults(&o)
	fd, err := openDevice()
	if err != nil {
		return nil, err
	}
	if err := mountDevice(fd, dir, o.FsName, maxWrite, o.AllowOther, []string{"default_permissions"}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	cn := newConn(fd, dir, maxWrite, o.Log)
	const firstGen = 1
	s, opts := newServer(dir, c, o, cn, firstGen, false)
	fail := func(err error) (*Server, error) {
		syscall.Unmount(dir, syscall.MNT_DETACH)
		unix.Close(fd)
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	if err := cn.readInit(); err != nil {
		return fail(err)
	}
	if err := cn.answerInit(true); err != nil {
		return fail(err)
	}
	device, err := MountDevice(dir)
	if err != nil {
		return fail(err)
	}
	if s.state, err = newStateFile(handoverState{gen: firstGen, device: device, uid: o.UID, gid: o.GID, init: cn.init}); err != nil {
		return fail(err)
	}
	cn.state = s.state
	s.start(c, o, opts)
	if err := pollHack(dir); err != nil {
		s.Unmount()
		return fail(err)
	}
	return s, nil
}

// pollHack has the kernel ask FUSE_POLL once, which go-fuse answers
// ENOSYS, so that it never asks again. Until then, Go's opening a file of
// the mount in this process (tests do) would add it to the runtime's
// epoll, the kernel would ask the daemon, and the daemon's reader, which
// waits in that same epoll, could not be woken to answer. The connection
// keeps the answer: a process that adopts it needs no hack.
func pollHack(dir string) error {
	fd, err := syscall.Open(filepath.Join(dir, ".go-fuse-epoll-hack"), syscall.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("poll probe: %w", err)
	}
	defer syscall.Close(fd)
	unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLPRI | unix.POLLOUT}}, 0)
	return nil
}

// Adopt serves c on the live mount at dir that h is the connection of,
// in place of the process that made or last served it: that one must
// have stopped reading it (Suspend, or its end). The kernel's settings
// are those of the mount's INIT. The caller keeps h to close.
func Adopt(dir string, c *cache.Cache, o MountOptions, h Handover) (*Server, error) {
	defaults(&o)
	st, err := readState(h.State)
	if err != nil {
		return nil, err
	}
	device, err := MountDevice(dir)
	if err != nil {
		return nil, err
	}
	if device != st.device {
		return nil, fmt.Errorf("the FUSE connection handed over is for the mount %s, and %s holds %s", st.device, dir, device)
	}
	fd, err := dupDevice(int(h.Dev.Fd()))
	if err != nil {
		return nil, err
	}
	stateFd, err := unix.FcntlInt(h.State.Fd(), unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("the mount's state: %w", err)
	}
	cn := newConn(fd, dir, maxWrite, o.Log)
	cn.init = st.init
	gen := nextGen(st.gen)
	s, opts := newServer(dir, c, o, cn, gen, true)
	s.state = os.NewFile(uintptr(stateFd), "s3mediafs-state")
	fail := func(err error) (*Server, error) {
		unix.Close(fd)
		s.state.Close()
		return nil, err
	}
	if err := cn.answerInit(false); err != nil {
		return fail(err)
	}
	st.gen = gen
	if err := writeState(s.state, st); err != nil {
		return fail(err)
	}
	cn.state = s.state
	cn.backings.load()
	s.Resent = cn.resend()
	s.start(c, o, opts)
	return s, nil
}

// start probes passthrough and serves.
func (s *Server) start(c *cache.Cache, o MountOptions, opts *Options) {
	if o.Passthrough {
		s.PassthroughOff = probePassthrough(s.conn, c.TempDir())
		s.Passthrough = s.PassthroughOff == nil
	}
	opts.mode.passthrough.Store(s.Passthrough)
	close(opts.mode.ready)
	if s.kernel.adopted {
		// Before any request: the cache must know them before it is
		// started, and before a resent open may show one stale.
		s.kernel.resumeWriters()
	}
	s.conn.serve()
}

// Unmount unmounts the mount; it fails (EBUSY) while a file is open.
func (s *Server) Unmount() error {
	return syscall.Unmount(s.dir, 0)
}

// Wait returns once the mount is unmounted, or suspended. An unmounted
// one's descriptors are closed.
func (s *Server) Wait() {
	s.conn.wait()
	if s.Unmounted() {
		s.closeOnce.Do(func() {
			unix.Close(s.conn.fd)
			s.state.Close()
		})
	}
}

// Unmounted reports whether the kernel ended the connection.
func (s *Server) Unmounted() bool {
	select {
	case <-s.conn.done:
		return true
	default:
		return false
	}
}

// Handover returns copies of the mount's descriptors, for systemd's
// file-descriptor store or for the process that takes over.
func (s *Server) Handover() (Handover, error) {
	dev, err := unix.FcntlInt(uintptr(s.conn.fd), unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		return Handover{}, fmt.Errorf("copy the FUSE descriptor: %w", err)
	}
	state, err := unix.FcntlInt(s.state.Fd(), unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		unix.Close(dev)
		return Handover{}, fmt.Errorf("copy the mount's state: %w", err)
	}
	return Handover{Dev: os.NewFile(uintptr(dev), "/dev/fuse"), State: os.NewFile(uintptr(state), "s3mediafs-state")}, nil
}

// Suspend stops reading the kernel's requests and waits up to wait for the
// ones read to be answered; the mount stays, with its requests queued,
// for as long as some process holds its descriptor. It reports whether
// every request read was answered: the others the next process asks the
// kernel to send again.
func (s *Server) Suspend(wait time.Duration) bool {
	return s.conn.suspend(wait)
}

// probePassthrough registers a file of the cache directory as a backing
// file, as a passthrough open would, and unregisters it. It fails where
// the kernel is older than 6.9, lacks CONFIG_FUSE_PASSTHROUGH, the daemon
// lacks CAP_SYS_ADMIN, or the cache directory is itself on a stacked
// filesystem too deep for passthrough.
func probePassthrough(cn *conn, scratchDir string) error {
	if cn.kernelSettings().Flags64()&fuse.CAP_PASSTHROUGH == 0 {
		return fmt.Errorf("the kernel does not offer FUSE passthrough (Linux ≥ 6.9 with CONFIG_FUSE_PASSTHROUGH)")
	}
	f, err := os.CreateTemp(scratchDir, "passthrough-probe-")
	if err != nil {
		return fmt.Errorf("probe file: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	cb := callbacks{cn}
	id, errno := cb.RegisterBackingFd(&fuse.BackingMap{Fd: int32(f.Fd())})
	if errno != 0 {
		return fmt.Errorf("register a backing file: %w (passthrough needs CAP_SYS_ADMIN)", errno)
	}
	if errno := cb.UnregisterBackingFd(id); errno != 0 {
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
