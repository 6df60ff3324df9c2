package fs

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// conn is one FUSE connection: the /dev/fuse descriptor a mount was made
// with, and the loop that reads the kernel's requests from it and answers
// them through go-fuse's ProtocolServer. The kernel keeps the connection,
// and every request queued on it, for as long as some process holds the
// descriptor, so the loop can stop (suspend) and another process can go on
// with the same descriptor and the same INIT.
type conn struct {
	fd   int // /dev/fuse, blocking: its readers are threads of their own
	dir  string
	ps   *fuse.ProtocolServer
	log  *slog.Logger
	init []byte // the kernel's INIT request, header included

	state    *os.File // the handover state (Handover.State)
	backings *backings
	writers  *writers

	maxWrite int
	bigBufs  sync.Pool // requests and replies that carry file data
	smallBuf sync.Pool // everything else

	inflight sync.WaitGroup // requests read and not yet answered

	readers atomic.Int64 // readers started, for tests

	mu        sync.Mutex
	reading   bool       // a reader is in read(2), or about to be; one at most
	readDone  *sync.Cond // on mu: reading was cleared, or the loop stopped
	suspended bool
	gone      bool // the kernel ended the connection (unmount, abort)
	done      chan struct{}
}

// Opcodes whose replies carry up to a whole read of bytes.
const (
	opRead        = 15
	opGetXattr    = 22
	opListXattr   = 23
	opReaddir     = 28
	opIoctl       = 39
	opReaddirplus = 44
)

const smallBufSize = 16 << 10

func newConn(fd int, dir string, maxWrite int, log *slog.Logger) *conn {
	c := &conn{fd: fd, dir: dir, log: log, maxWrite: maxWrite, done: make(chan struct{})}
	c.readDone = sync.NewCond(&c.mu)
	c.backings = newBackings(c)
	c.writers = newWriters(c)
	big := maxWrite + 64<<10 // room for the header and a write's own
	c.bigBufs.New = func() any { return prefaulted(big) }
	c.smallBuf.New = func() any { b := make([]byte, smallBufSize); return &b }
	return c
}

// prefaulted returns a buffer of n bytes whose every page is mapped and
// writable. The read loop reads requests into such buffers: the kernel
// copies a request into the reader's buffer page by page, and a page that
// must be faulted in while the daemon is being killed fails the copy, and
// with it the request (EIO to the writer, found under 20 SIGKILLs in a
// row in daemon I/O mode), where a request copied whole is sent again to
// the next daemon (FUSE_NOTIFY_RESEND). Fresh memory from the OS is not
// mapped until first written, hence the writes.
func prefaulted(n int) *[]byte {
	b := make([]byte, n)
	for i := 0; i < n; i += os.Getpagesize() {
		b[i] = 1
	}
	clear(b)
	return &b
}

// openDevice opens /dev/fuse. Reads block: Go's poller must not wait on
// it, because a process that opens a file of its own mount adds that file
// to the poller's epoll, which asks the daemon (FUSE_POLL) while holding
// the epoll's lock, and the daemon's reader could then never be woken.
func openDevice() (int, error) {
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open /dev/fuse: %w", err)
	}
	return fd, nil
}

// dupDevice copies an inherited /dev/fuse descriptor, close-on-exec and
// blocking as openDevice opens one.
func dupDevice(inherited int) (int, error) {
	fd, err := unix.FcntlInt(uintptr(inherited), unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		return -1, fmt.Errorf("the FUSE descriptor: %w", err)
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("the FUSE descriptor: %w", err)
	}
	return fd, nil
}

// mountDevice mounts a FUSE filesystem of dev at dir, with the options
// fusermount would give it.
func mountDevice(fd int, dir, source string, maxRead int, allowOther bool, options []string) error {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return err
	}
	opts := []string{
		fmt.Sprintf("fd=%d", fd),
		fmt.Sprintf("rootmode=%o", st.Mode&syscall.S_IFMT),
		fmt.Sprintf("user_id=%d", os.Geteuid()),
		fmt.Sprintf("group_id=%d", os.Getegid()),
		fmt.Sprintf("max_read=%d", maxRead),
	}
	opts = append(opts, options...)
	if allowOther {
		opts = append(opts, "allow_other")
	}
	return syscall.Mount(source, dir, "fuse.s3mediafs", syscall.MS_NOSUID|syscall.MS_NODEV, strings.Join(opts, ","))
}

// readInit reads the kernel's first request, which must be INIT, and
// keeps it: a process that takes the connection over replays it to its
// own ProtocolServer, as there is no second INIT.
func (c *conn) readInit() error {
	buf := make([]byte, c.maxWrite+64<<10)
	for {
		n, err := unix.Read(c.fd, buf)
		if errors.Is(err, syscall.EINTR) || errors.Is(err, syscall.ENOENT) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read INIT: %w", err)
		}
		if n < int(unsafe.Sizeof(fuse.InitIn{})) || opcodeOf(buf[:n]) != opInit {
			return fmt.Errorf("the kernel's first request is not INIT")
		}
		c.init = append([]byte(nil), buf[:n]...)
		return nil
	}
}

const opInit = 26

func opcodeOf(req []byte) uint32 {
	if len(req) < 8 {
		return 0
	}
	return *(*uint32)(unsafe.Pointer(&req[4]))
}

// kernelSettings is the INIT request as go-fuse reads it.
func (c *conn) kernelSettings() *fuse.InitIn {
	return (*fuse.InitIn)(unsafe.Pointer(&c.init[0]))
}

// answerInit gives the kept INIT to the ProtocolServer, which learns the
// kernel's settings from it, and sends the reply when reply is set (the
// first process; a process taking over throws it away).
func (c *conn) answerInit(reply bool) error {
	out := make([]byte, smallBufSize)
	n, st := c.ps.HandleRequest([][]byte{c.init}, [][]byte{out})
	if !st.Ok() || n == 0 {
		return fmt.Errorf("INIT: %v", st)
	}
	if status := *(*int32)(unsafe.Pointer(&out[4])); status != 0 {
		return fmt.Errorf("INIT refused: %v", syscall.Errno(-status))
	}
	if !reply {
		return nil
	}
	if _, err := unix.Write(c.fd, out[:n]); err != nil {
		return fmt.Errorf("answer INIT: %w", err)
	}
	return nil
}

// resend asks the kernel to queue again the requests that a process
// before this one read and never answered (FUSE_NOTIFY_RESEND, Linux ≥
// 6.9). It reports false where the kernel cannot.
func (c *conn) resend() bool {
	var h fuse.OutHeader
	h.Length = uint32(unsafe.Sizeof(h))
	h.Status = -int32(fuse.NOTIFY_RESEND) // a notification carries its code, positive, in the error field
	_, err := unix.Write(c.fd, unsafe.Slice((*byte)(unsafe.Pointer(&h)), unsafe.Sizeof(h)))
	return err == nil
}

// serve starts reading requests. The reader answers each request itself
// and then reads the next, so that on a serial workload (a purge's
// lookup, unlink and rmdir, one after another) a thread already running
// answers: handing each request to a goroutine of its own cost a wake-up
// of another thread per request, a third of a cold purge's time, and two
// readers taking turns kept most of that cost. A request that takes
// longer than readerTakeover (one waiting for the store) lets another
// reader start, so that it holds up no other request and a
// FUSE_INTERRUPT for it can be read.
func (c *conn) serve() {
	go c.readLoop()
}

// readerTakeover is how long a request may keep its reader from the next.
// Requests answered from the index take tens of microseconds.
var readerTakeover = 200 * time.Microsecond

func (c *conn) readLoop() {
	c.readers.Add(1)
	var buf *[]byte
	defer func() {
		if buf != nil {
			c.bigBufs.Put(buf)
		}
	}()
	for {
		c.mu.Lock()
		if c.suspended || c.gone || c.reading {
			// Another reader reads now (or none may).
			c.mu.Unlock()
			return
		}
		c.reading = true
		c.mu.Unlock()
		if buf == nil {
			buf = c.bigBufs.Get().(*[]byte)
		}
		n, err := unix.Read(c.fd, *buf)
		c.mu.Lock()
		if err == nil {
			// Counted before the read is over for suspend, which
			// waits for the reader and then for what it read.
			c.inflight.Add(1)
		}
		c.reading = false
		c.readDone.Broadcast()
		c.mu.Unlock()
		switch {
		case err == nil:
		case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.EINTR), errors.Is(err, syscall.EAGAIN):
			continue // a request interrupted before it was read
		case errors.Is(err, syscall.ENODEV):
			c.end()
			return
		default:
			c.log.Error("reading the FUSE connection failed; the mount stops answering", "err", err)
			c.end()
			return
		}
		req := buf
		if n <= smallBufSize {
			// Keep the big buffer for the next read: a request waiting
			// for the store holds 16 KiB, not a whole write's buffer.
			req = c.smallBuf.Get().(*[]byte)
			copy(*req, (*buf)[:n])
		} else {
			buf = nil
		}
		takeover := time.AfterFunc(readerTakeover, c.readLoop)
		c.handle(req, n)
		takeover.Stop()
	}
}

// end records that the kernel ended the connection.
func (c *conn) end() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.gone {
		c.gone = true
		close(c.done)
		c.readDone.Broadcast()
	}
}

func (c *conn) handle(req *[]byte, n int) {
	defer c.inflight.Done()
	in := (*req)[:n]
	pool := &c.smallBuf
	switch opcodeOf(in) {
	case opRead, opReaddir, opReaddirplus, opGetXattr, opListXattr, opIoctl:
		pool = &c.bigBufs
	}
	out := pool.Get().(*[]byte)
	m, _ := c.ps.HandleRequest([][]byte{in}, [][]byte{*out})
	c.putBuf(req)
	if m > 0 {
		// ENOENT: the request was interrupted and the kernel gave up on it.
		if _, err := unix.Write(c.fd, (*out)[:m]); err != nil && !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.ENODEV) {
			c.log.Warn("answering the kernel failed", "err", err)
		}
	}
	pool.Put(out)
}

func (c *conn) putBuf(b *[]byte) {
	if len(*b) == smallBufSize {
		c.smallBuf.Put(b)
	} else {
		c.bigBufs.Put(b)
	}
}

// suspend stops reading requests and waits up to wait for those read to
// be answered. It reports whether all were; the others the kernel sends
// again to the next process (resend).
func (c *conn) suspend(wait time.Duration) bool {
	c.mu.Lock()
	c.suspended = true
	c.readDone.Broadcast() // for wait
	if c.reading {
		// The reader sleeps in read(2) until a request comes: one is
		// made. It may stay unanswered, for the next process, if another
		// request woke the reader first; its thread ends with this
		// process.
		go func() {
			var st unix.Statfs_t
			unix.Statfs(c.dir, &st)
		}()
	}
	c.waitReadLocked()
	c.mu.Unlock()
	answered := make(chan struct{})
	go func() { c.inflight.Wait(); close(answered) }()
	select {
	case <-answered:
		return true
	case <-time.After(wait):
		return false
	}
}

// wait blocks until the kernel ends the connection (an unmount) or the
// loop is suspended, and no reader is in read(2) or will be again.
func (c *conn) wait() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for !c.gone && !c.suspended {
		c.readDone.Wait()
	}
	c.waitReadLocked()
}

// waitReadLocked waits until no reader is in read(2). Callers hold c.mu,
// with the connection suspended or gone, so none starts reading again.
func (c *conn) waitReadLocked() {
	for c.reading {
		c.readDone.Wait()
	}
}

// callbacks are what go-fuse's node bridge asks of the server: passthrough
// backing files, registered on the connection's descriptor. s3mediafs
// sends no cache notifications, so those answer ENOSYS.
type callbacks struct{ c *conn }

const (
	iocBackingOpen  = 0x4010e501 // FUSE_DEV_IOC_BACKING_OPEN
	iocBackingClose = 0x4004e502 // FUSE_DEV_IOC_BACKING_CLOSE
)

// RegisterBackingFd registers a cache data file for passthrough.
func (cb callbacks) RegisterBackingFd(m *fuse.BackingMap) (int32, syscall.Errno) {
	return cb.c.backings.register(m)
}

// UnregisterBackingFd drops a registration; open files keep their backing.
func (cb callbacks) UnregisterBackingFd(id int32) syscall.Errno {
	return cb.c.backings.unregister(id)
}

func (callbacks) DeleteNotify(parent, child uint64, name string) fuse.Status { return fuse.ENOSYS }
func (callbacks) EntryNotify(parent uint64, name string) fuse.Status         { return fuse.ENOSYS }
func (callbacks) InodeNotify(node uint64, off, length int64) fuse.Status     { return fuse.ENOSYS }
func (callbacks) InodeRetrieveCache(node uint64, offset int64, dest []byte) (int, fuse.Status) {
	return 0, fuse.ENOSYS
}
func (callbacks) InodeNotifyStoreCache(node uint64, offset int64, data []byte) fuse.Status {
	return fuse.ENOSYS
}
