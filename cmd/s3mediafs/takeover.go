package main

// Going on with a live mount in another process, so that a crash, a
// restart or an upgrade of the daemon leaves Synapse's media store mounted:
//
//   - systemd's file-descriptor store keeps the mount's FUSE connection
//     while the daemon is down (a crash, `systemctl restart`); the next
//     start gets it back in LISTEN_FDS;
//   - SIGHUP (`systemctl reload`): the daemon hands the mount to a new
//     run of the binary on disk, in the same process (an exec, the
//     descriptors named in S3MEDIAFS_HANDOVER_FDS), which is how an
//     upgrade takes effect under systemd;
//   - the same `s3mediafs mount` command, started while a daemon serves
//     the mount point, asks that daemon on its takeover socket and is
//     handed the mount.
//
// In each, the old daemon stops reading requests and finishes the ones it
// has, closes its index (one process at a time may hold it), and hands
// over; the new one opens the index and serves the same connection
// (fs.Adopt). Requests the kernel queued meanwhile wait, and are answered.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"golang.org/x/sys/unix"

	"github.com/s3mediafs/s3mediafs/cache"
	mediafs "github.com/s3mediafs/s3mediafs/fs"
)

// handoverWait bounds how long a daemon handing its mount over waits for
// the requests it has read to be answered; the rest the kernel sends
// again to the next daemon.
const handoverWait = 10 * time.Second

// takeoverWait bounds how long a new daemon waits for the old one to
// hand over: its wait for requests, and its index's close.
const takeoverWait = 2 * time.Minute

// handoverEnv names the descriptors of the mount a daemon restarting in
// place passes to the binary it runs: "dev,state".
const handoverEnv = "S3MEDIAFS_HANDOVER_FDS"

// inheritedHandover returns the mount connection passed by this process
// before an exec (handoverEnv) or by systemd's file-descriptor store
// (LISTEN_FDS), or nil. Descriptors of other names are closed.
func inheritedHandover() *mediafs.Handover {
	if v := os.Getenv(handoverEnv); v != "" {
		os.Unsetenv(handoverEnv)
		var dev, state int
		if _, err := fmt.Sscanf(v, "%d,%d", &dev, &state); err == nil && dev > 2 && state > 2 {
			unix.CloseOnExec(dev)
			unix.CloseOnExec(state)
			return &mediafs.Handover{Dev: os.NewFile(uintptr(dev), mediafs.DevFDName), State: os.NewFile(uintptr(state), mediafs.StateFDName)}
		}
	}
	var h mediafs.Handover
	for _, f := range activation.Files(true) {
		switch f.Name() {
		case mediafs.DevFDName:
			h.Dev = f
		case mediafs.StateFDName:
			h.State = f
		default:
			f.Close()
		}
	}
	if h.Dev == nil || h.State == nil {
		h.Close()
		return nil
	}
	return &h
}

// usableHandover reports whether h is the connection of the mount on top
// at mnt; the mount table is read, nothing asks the mount.
func usableHandover(h *mediafs.Handover, mnt string) error {
	want, err := h.Device()
	if err != nil {
		return err
	}
	m, err := mediafs.MountAt(mnt)
	if err != nil {
		return err
	}
	if m.Type != ourFSType || m.Device != want {
		return fmt.Errorf("%s no longer holds the mount it was for (device %s; now %q %s)", mnt, want, m.Type, m.Device)
	}
	return nil
}

// systemd's notify protocol, with descriptors: go-systemd has no helper
// for sending them. One datagram per name.

// storeInSystemd keeps the mount's descriptors in the unit's
// file-descriptor store (FileDescriptorStoreMax=); without NOTIFY_SOCKET
// it does nothing.
func storeInSystemd(h mediafs.Handover) error {
	if err := sdNotifyFiles("FDSTORE=1\nFDPOLL=0\nFDNAME="+mediafs.DevFDName, h.Dev); err != nil {
		return err
	}
	return sdNotifyFiles("FDSTORE=1\nFDPOLL=0\nFDNAME="+mediafs.StateFDName, h.State)
}

// removeFromSystemd empties the store of a mount that is gone.
func removeFromSystemd() {
	sdNotifyFiles("FDSTOREREMOVE=1\nFDNAME=" + mediafs.DevFDName)
	sdNotifyFiles("FDSTOREREMOVE=1\nFDNAME=" + mediafs.StateFDName)
}

func sdNotifyFiles(state string, files ...*os.File) error {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return nil
	}
	if name[0] == '@' {
		name = "\x00" + name[1:]
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	return unix.Sendmsg(fd, []byte(state), oob, &unix.SockaddrUnix{Name: name}, 0)
}

// takeoverSocket is where a daemon waits to hand its mount over: beside
// its control socket, in the same root-only directory.
func takeoverSocket(controlSocket string) string { return controlSocket + ".takeover" }

// takeoverRequest is a new daemon asking for the mount.
type takeoverRequest struct{ conn *net.UnixConn }

// takeoverIdentity is what a daemon taking a mount over must share with
// the one serving it: the index the kernel's inode numbers come from, and
// the objects its records describe.
func takeoverIdentity(cfg Config) string {
	dir, err := filepath.Abs(cfg.CacheDir)
	if err != nil {
		dir = cfg.CacheDir
	}
	return strings.Join([]string{"cache_dir=" + dir, "bucket=" + cfg.Bucket, "prefix=" + cfg.Prefix}, " ")
}

// listenTakeover accepts takeover requests from processes of this user
// (or root) for the same identity, and sends them on requests.
func listenTakeover(path, identity string, requests chan<- takeoverRequest, log *slog.Logger) (func(), error) {
	os.Remove(path) // a crashed daemon's; the index lock says it is ours
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("takeover socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("takeover socket: %w", err)
	}
	go func() {
		for {
			c, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			if err := trustedPeer(c); err != nil {
				log.Warn("takeover refused", "err", err)
				c.Close()
				continue
			}
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			asked, ok := strings.CutPrefix(strings.TrimSpace(line), "take over\t")
			if err != nil || !ok {
				c.Close()
				continue
			}
			if asked != identity {
				log.Warn("takeover refused: the new daemon's configuration differs", "serving", identity, "asked", asked)
				fmt.Fprintf(c, "refused: this mount is served with %s\n", identity)
				c.Close()
				continue
			}
			c.SetReadDeadline(time.Time{})
			requests <- takeoverRequest{conn: c}
		}
	}()
	return func() { ln.Close(); os.Remove(path) }, nil
}

// trustedPeer accepts root and this daemon's own user only: the mount's
// connection is the whole media store.
func trustedPeer(c *net.UnixConn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var credErr error
	raw.Control(func(fd uintptr) { cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
	if credErr != nil {
		return credErr
	}
	if cred.Uid != 0 && int(cred.Uid) != os.Geteuid() {
		return fmt.Errorf("uid %d may not take the mount over", cred.Uid)
	}
	return nil
}

// errNoDaemon: nothing answers on the takeover socket.
var errNoDaemon = errors.New("no daemon answers on the takeover socket")

// requestTakeover asks the daemon serving the mount for it, and returns
// its connection once that daemon has let go of the index. The caller
// says "adopted" (or not) on conn, then closes it.
func requestTakeover(path, identity string) (*mediafs.Handover, *net.UnixConn, error) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", errNoDaemon, err)
	}
	c.SetDeadline(time.Now().Add(takeoverWait))
	if _, err := fmt.Fprintf(c, "take over\t%s\n", identity); err != nil {
		c.Close()
		return nil, nil, err
	}
	buf := make([]byte, 256)
	oob := make([]byte, unix.CmsgSpace(2*4))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("the serving daemon did not hand over: %w", err)
	}
	files, err := receivedFiles(oob[:oobn])
	if err != nil || len(files) != 2 || !strings.HasPrefix(string(buf[:n]), "ok") {
		for _, f := range files {
			f.Close()
		}
		c.Close()
		if answer := strings.TrimSpace(string(buf[:n])); strings.HasPrefix(answer, "refused: ") {
			return nil, nil, fmt.Errorf("the mount point is served by another s3mediafs that will not hand it over (%s; this configuration has %s): stop that one first",
				strings.TrimPrefix(answer, "refused: "), identity)
		}
		return nil, nil, fmt.Errorf("the serving daemon did not hand over: %q %v", buf[:n], err)
	}
	c.SetDeadline(time.Time{})
	return &mediafs.Handover{Dev: files[0], State: files[1]}, c, nil
}

func receivedFiles(oob []byte) ([]*os.File, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var files []*os.File
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			unix.CloseOnExec(fd)
			files = append(files, os.NewFile(uintptr(fd), "handover"))
		}
	}
	return files, nil
}

// handingOver is a mount this daemon stopped serving, to be given to the
// next once the index is closed: on a takeover socket, or to an exec of
// the binary (SIGHUP).
type handingOver struct {
	h    mediafs.Handover
	conn *net.UnixConn // nil: exec
	m    *mountArgs    // for an exec: how this daemon was started
}

// complete gives the mount away; for an exec it returns only on failure.
func (p *handingOver) complete(log *slog.Logger) error {
	defer p.h.Close()
	if p.conn == nil {
		return p.exec(log)
	}
	defer p.conn.Close()
	if _, _, err := p.conn.WriteMsgUnix([]byte("ok\n"), unix.UnixRights(int(p.h.Dev.Fd()), int(p.h.State.Fd())), nil); err != nil {
		return fmt.Errorf("hand the mount over: %w", err)
	}
	// The new daemon says whether it serves; it holds the connection
	// either way, so this one may go.
	p.conn.SetReadDeadline(time.Now().Add(takeoverWait))
	answer, _ := bufio.NewReader(p.conn).ReadString('\n')
	if strings.TrimSpace(answer) != "adopted" {
		return fmt.Errorf("the new daemon did not take the mount (%q); it may be left without a daemon until the next start", strings.TrimSpace(answer))
	}
	log.Info("handed the mount over to the new daemon")
	return nil
}

// exec runs the binary on disk (an upgraded one, after a package upgrade)
// in this process, with the mount's descriptors as LISTEN_FDS, the way
// systemd passes its store.
func (p *handingOver) exec(log *slog.Logger) error {
	self, err := exec.LookPath(os.Args[0])
	if err == nil {
		self, err = filepath.Abs(self)
	}
	if err != nil {
		return fmt.Errorf("find the binary to restart: %w", err)
	}
	// Fresh copies, not close-on-exec, above the descriptors in use: none
	// of this process's own is replaced while it still logs.
	inherit := func(f *os.File) (int, error) { return unix.FcntlInt(f.Fd(), unix.F_DUPFD, 10) }
	dev, err := inherit(p.h.Dev)
	if err != nil {
		return err
	}
	state, err := inherit(p.h.State)
	if err != nil {
		return err
	}
	args, handoffJSON, err := restartArgs(p.m)
	if err != nil {
		return err
	}
	if handoffJSON != nil {
		fd, err := unix.MemfdCreate("s3mediafs-handoff", 0)
		if err != nil {
			return err
		}
		if _, err := unix.Write(fd, handoffJSON); err != nil {
			return err
		}
		if _, err := unix.Seek(fd, 0, 0); err != nil {
			return err
		}
		args = append(args, "--handoff-fd", strconv.Itoa(fd))
	}
	env := []string{}
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "LISTEN_") && !strings.HasPrefix(e, handoverEnv+"=") {
			env = append(env, e)
		}
	}
	env = append(env, fmt.Sprintf("%s=%d,%d", handoverEnv, dev, state))
	log.Info("restarting in place with the mount", "binary", self)
	err = syscall.Exec(self, args, env)
	return fmt.Errorf("restart %s: %w", self, err)
}

// restartArgs are the arguments of this daemon's restart in place: its
// own, but for the readiness pipe (its reader is gone); a daemon that
// was handed its configuration is handed it again (--handoff-fd).
func restartArgs(m *mountArgs) (args []string, handoffJSON []byte, err error) {
	if m.handedOff {
		handoffJSON, err = json.Marshal(handoff{Config: m.cfg, Mountpoint: m.mountpoint, Embedded: m.embedded, DebugFUSE: m.debugFUSE, Files: m.files})
		return []string{os.Args[0], "mount"}, handoffJSON, err
	}
	for i := 0; i < len(os.Args); i++ {
		a := os.Args[i]
		switch {
		case a == "--ready-fd" || a == "-ready-fd":
			i++
		case strings.HasPrefix(a, "--ready-fd=") || strings.HasPrefix(a, "-ready-fd="):
		default:
			args = append(args, a)
		}
	}
	return args, nil, nil
}

// liveMountHandover is a live mount of ours to go on with, if there is one.
type liveMountHandover struct {
	h    *mediafs.Handover
	peer *net.UnixConn // the daemon that handed it over, waiting for an answer
	from string        // "inherited" (LISTEN_FDS) or "takeover"
}

// liveMount finds a live mount of ours at mnt to go on with: one passed in
// LISTEN_FDS, or the one a daemon serves at mnt, asked for on its takeover
// socket. With none, the mount point is checkMountpoint's to judge.
func liveMount(mnt, takeoverPath, identity string, log *slog.Logger) (*liveMountHandover, error) {
	l := &liveMountHandover{}
	if h := inheritedHandover(); h != nil {
		if err := usableHandover(h, mnt); err != nil {
			log.Warn("the mount connection passed in is not this mount's any more; mounting afresh", "err", err)
			h.Close()
			removeFromSystemd()
		} else {
			l.h, l.from = h, "inherited"
			return l, nil
		}
	}
	if m, err := mediafs.MountAt(mnt); err != nil || m.Type != ourFSType {
		return l, err
	}
	h, peer, err := requestTakeover(takeoverPath, identity)
	switch {
	case errors.Is(err, errNoDaemon):
		// A dead mount, or one whose daemon has no takeover socket.
	case err != nil:
		return nil, err
	default:
		l.h, l.peer, l.from = h, peer, "takeover"
	}
	return l, nil
}

func (l *liveMountHandover) close() {
	if l.h != nil {
		l.h.Close()
	}
	if l.peer != nil {
		l.peer.Close()
	}
	l.h, l.peer = nil, nil
}

// mount goes on with the live mount, or mounts afresh. A live mount that
// cannot be adopted is detached first, with one log line: never a dead
// mount left behind.
func (l *liveMountHandover) mount(mnt string, c *cache.Cache, mo mediafs.MountOptions, log *slog.Logger) (*mediafs.Server, error) {
	if l.h != nil {
		server, err := mediafs.Adopt(mnt, c, mo, *l.h)
		if err == nil {
			log.Info("serving the live mount handed over; it was never unmounted", "from", l.from, "requests_resent", server.Resent)
			if l.peer != nil {
				fmt.Fprintln(l.peer, "adopted")
			}
			if l.from != "inherited" {
				keepInSystemd(server, log)
			}
			l.close()
			return server, nil
		}
		log.Warn("could not go on with the live mount; detaching it and mounting afresh", "err", err)
		if l.peer != nil {
			fmt.Fprintln(l.peer, "failed")
		}
		l.close()
		removeFromSystemd()
		if err := syscall.Unmount(mnt, syscall.MNT_DETACH); err != nil {
			return nil, fmt.Errorf("detach the mount that could not be adopted: %w", err)
		}
	}
	server, err := mediafs.Mount(mnt, c, mo)
	if err != nil {
		return nil, err
	}
	keepInSystemd(server, log)
	return server, nil
}

// keepInSystemd gives systemd copies of the mount's descriptors, under
// systemd only.
func keepInSystemd(server *mediafs.Server, log *slog.Logger) {
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return
	}
	h, err := server.Handover()
	if err == nil {
		defer h.Close()
		err = storeInSystemd(h)
	}
	if err != nil {
		log.Warn("systemd did not keep the mount's connection (FileDescriptorStoreMax=); after a crash the mount is made afresh", "err", err)
	}
}
