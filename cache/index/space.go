package index

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Badger writes its write-ahead log, its value log and its tables through
// memory maps of files it makes sparse. On a full filesystem such a write
// does not fail: the process dies of SIGBUS, and dies again at every start
// (a new log file is made and written at open). So the index owns the
// space it writes into before it writes:
//
//   - Every file Badger maps for writing (*.mem, *.vlog, DISCARD) is
//     allocated whole (fallocate) as soon as it appears, so the log
//     writes that fill it never meet a hole.
//   - Below a floor of free space (need: one memtable's log, the table it
//     flushes to and a compaction step), the index takes no write: Update
//     and the other writers return ErrFull, which the cache answers with
//     ENOSPC, while every read goes on. The writes that make room (an
//     upload's steps, a delete, an eviction: UpdateFreeing) go on down to
//     a lower floor, a memtable's log and its table, so that a full
//     filesystem of dirty files can still send them and let them go.
//   - A reserve file (cache_dir/index.reserve: two memtables and a
//     megabyte) is kept while there is room for it and the floor. A stop
//     on a full filesystem gives it back so that Badger can flush its
//     memtable; a start gives it back so that Badger can open a new log
//     and replay the old ones. Without it, a stop that lacks the room
//     leaves Badger unclosed (its log on disk holds every write; the next
//     start replays it).
//   - A start that still lacks the room takes back the unwritten tails of
//     the logs and value logs it allocated (their zeros; what Badger wrote
//     stays), which is more than what replaying them writes. Only when even that is not
//     enough does it stop, with an error that names the figures.
//
// What this cannot close: another process that takes the last free bytes
// in the milliseconds between an admitted write and the flush or
// compaction it causes. The floor makes that window small; the reserve
// makes the next start succeed after it.

// ErrFull is the answer to an index write while the index's filesystem
// has less free space than the index may need.
// It wraps ENOSPC, the writer's answer.
var ErrFull = fmt.Errorf("the cache filesystem is too full for the index to take a write: %w", syscall.ENOSPC)

// reserveName is the reserve file, beside the index directory.
const reserveName = "index.reserve"

// memTableSize is the size of Badger's memtables for a filesystem of
// total bytes: small on a small filesystem, so that the room the index
// must keep is a small part of it.
func memTableSize(total int64) int64 {
	return min(max(total/64, 2<<20), 16<<20)
}

// spaceNeed is the free space the index keeps for itself with memtables
// of m bytes: a new log file (2m, allocated whole), the table a full
// memtable flushes to (m), and a megabyte for a compaction step and the
// manifest.
func spaceNeed(m int64) int64 { return 3*m + 1<<20 }

// freeingNeed is the floor of the writes that make room: a new memtable's
// log and the table the full one flushes to, without the compaction step
// spaceNeed keeps besides.
func freeingNeed(m int64) int64 { return 2*m + 1<<20 }

// openNeed is what Badger writes as it opens with logs files to replay:
// a table for each (m), a new log's first page, the manifest.
func openNeed(m int64, logs int) int64 { return int64(logs)*m + 1<<20 }

// openSlack is what an open writes besides replaying its logs: a new
// log's first page, the manifest, the key registry.
const openSlack = 256 << 10

// reserveSize is the reserve kept for a stop and a start on a full
// filesystem: a memtable's table and a megabyte as Badger closes, and a
// memtable's table (at least openSlack) as it opens.
func reserveSize(m int64) int64 { return 2*m + 1<<20 }

// spaceGuard admits index writes while the filesystem has room for what
// the index may write, and keeps the mapped files and the reserve.
type spaceGuard struct {
	dir      string // cache_dir: holds index/ and the reserve
	memTable int64  // Badger's memtable size
	need     int64  // the floor: spaceNeed(memTable)
	needLow  int64  // the floor of writes that make room: freeingNeed(memTable)
	log      *slog.Logger
	stop     chan struct{}  // closed by close: the watcher ends
	stopped  sync.WaitGroup // the watcher

	mu   sync.Mutex // guards at, free and full
	at   time.Time  // when free was sampled
	free int64
	full bool // the last check found less than need: said once in the log
}

// freeBytes is the space an unprivileged writer could still take: the
// index keeps to that, and leaves the root-reserved blocks alone.
func freeBytes(dir string) (free, total int64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), int64(st.Blocks) * int64(st.Bsize), nil
}

// prepareSpace readies dir (cache_dir) for a Badger that opens for writing:
// it picks the memtable size and, when the filesystem lacks the room to
// open, gives back the reserve and then the logs' unwritten tails. It
// fails, naming the figures, when there is still not enough.
func prepareSpace(dir string, log *slog.Logger) (*spaceGuard, int64, error) {
	free, total, err := freeBytes(dir)
	if err != nil {
		return nil, 0, fmt.Errorf("index: %w", err)
	}
	m := memTableSize(total)
	g := &spaceGuard{dir: dir, memTable: m, need: spaceNeed(m), needLow: freeingNeed(m), log: log, stop: make(chan struct{})}
	logs, _ := filepath.Glob(filepath.Join(g.indexDir(), "*.mem"))
	want := openNeed(m, len(logs))
	if free < want && g.giveBackReserve("open", -1) {
		free, _, _ = g.freeNow()
	}
	if free < want {
		// What replaying the logs writes is at most what they hold; a
		// new log's first page and the manifest take little more.
		want = openSlack
		vlogs, _ := filepath.Glob(filepath.Join(g.indexDir(), "*.vlog"))
		for _, p := range append(logs, vlogs...) {
			used, err := trimLog(p)
			if err != nil {
				return nil, 0, fmt.Errorf("index: %w", err)
			}
			if strings.HasSuffix(p, ".mem") {
				want += used
			}
		}
		free, _, _ = g.freeNow()
		g.log.Warn("the cache filesystem is full: the index gives back its logs' unwritten space to open; writes get ENOSPC until there is room",
			"dir", dir, "free_bytes", free, "needs_bytes", want)
	}
	if free < want {
		return nil, 0, fmt.Errorf("the cache filesystem of %s has %d bytes free and no reserve left; the index needs %d to open: free some space there (nothing is lost: the index and the data files are intact)", dir, free, want)
	}
	return g, m, nil
}

// freeNow is freeBytes once what was given back counts: a journalling
// filesystem (ext4) frees a removed file's blocks only as it commits.
func (g *spaceGuard) freeNow() (free, total int64, err error) {
	if d, err := os.Open(g.dir); err == nil {
		unix.Syncfs(int(d.Fd()))
		d.Close()
	}
	return freeBytes(g.dir)
}

// trimLog gives back the blocks of a log file past the last byte Badger
// wrote (the zeros of its allocation), keeping its size: replay stops at
// the first entry that is zeros either way. It returns the bytes kept.
func trimLog(path string) (int64, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	const chunk = 64 << 10
	buf := make([]byte, chunk)
	end := fi.Size()
	used := int64(0)
scan:
	for off := (end - 1) / chunk * chunk; off >= 0; off -= chunk {
		n, err := f.ReadAt(buf, off)
		if err != nil && n == 0 {
			return 0, err
		}
		for i := n - 1; i >= 0; i-- {
			if buf[i] != 0 {
				used = off + int64(i) + 1
				break scan
			}
		}
	}
	used = (used + 4095) &^ 4095
	if used < end {
		if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, used, end-used); err != nil && !errors.Is(err, unix.EOPNOTSUPP) {
			return 0, fmt.Errorf("give back the unwritten end of %s: %w", path, err)
		}
	}
	return used, nil
}

// giveBackReserve gives n bytes of the reserve file back (n < 0: all of
// it), so that Badger has room to do what for says; it reports whether
// there was a reserve.
func (g *spaceGuard) giveBackReserve(what string, n int64) bool {
	fi, err := os.Stat(g.reservePath())
	if err != nil {
		return false
	}
	if n < 0 || n >= fi.Size() {
		n, err = fi.Size(), os.Remove(g.reservePath())
	} else {
		err = os.Truncate(g.reservePath(), fi.Size()-n)
	}
	if err != nil {
		return false
	}
	g.freeNow()
	g.log.Warn("the cache filesystem is full: the index gives back its reserve to "+what+"; writes get ENOSPC until there is room",
		"given_bytes", n, "reserve_bytes", fi.Size(), "dir", g.dir)
	return true
}

// roomToClose reports whether Badger can flush its memtable to a table
// as it closes, giving back the reserve if it must.
func (g *spaceGuard) roomToClose() bool {
	if g == nil {
		return true
	}
	want := g.memTable + 1<<20
	free, _, err := freeBytes(g.dir)
	// The rest stays for the next start.
	if err == nil && free < want && g.giveBackReserve("close", want-free) {
		free, _, err = g.freeNow()
	}
	return err == nil && free >= want
}

func (g *spaceGuard) reservePath() string { return filepath.Join(g.dir, reserveName) }
func (g *spaceGuard) indexDir() string    { return filepath.Join(g.dir, "index") }

// start allocates the mapped files Badger has made, then watches for new
// ones, and keeps the reserve while there is room for it.
func (g *spaceGuard) start() error {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return fmt.Errorf("index: watch for new log files: %w", err)
	}
	if _, err := unix.InotifyAddWatch(fd, g.indexDir(), unix.IN_CREATE); err != nil {
		unix.Close(fd)
		return fmt.Errorf("index: watch for new log files: %w", err)
	}
	g.allocateAll()
	g.keepReserve()
	g.stopped.Add(1)
	go g.watch(fd)
	return nil
}

// allocateAll allocates every mapped file of the index.
func (g *spaceGuard) allocateAll() {
	names, _ := os.ReadDir(g.indexDir())
	for _, e := range names {
		g.allocate(e.Name())
	}
}

// mapped reports whether Badger writes the file named through a memory map.
func mapped(name string) bool {
	return strings.HasSuffix(name, ".mem") || strings.HasSuffix(name, ".vlog") || name == "DISCARD"
}

// allocate gives the mapped file named its blocks now, so that no write
// into it faults later. Without room for it and a flush besides, it is
// left for later (allocateAll, when the floor lets writes in again): the
// floor keeps writes away from its holes meanwhile. An allocation that
// fails part way gives back what it took, which would starve a flush.
func (g *spaceGuard) allocate(name string) {
	if !mapped(name) {
		return
	}
	path := filepath.Join(g.indexDir(), name)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return // gone already (a flushed memtable's log)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return
	}
	if free, _, err := freeBytes(g.dir); err != nil || free < fi.Size()+g.memTable+openSlack {
		return
	}
	if err := unix.Fallocate(int(f.Fd()), 0, 0, fi.Size()); err != nil && !errors.Is(err, unix.EOPNOTSUPP) {
		g.log.Warn("index: could not allocate a log file's space ahead", "file", name, "bytes", fi.Size(), "err", err)
		if _, terr := trimLog(path); terr != nil {
			g.log.Warn("index: could not give back a part-allocated log's space", "file", name, "err", terr)
		}
	}
}

// watch allocates each mapped file Badger makes, as it appears, until stop.
func (g *spaceGuard) watch(fd int) {
	defer g.stopped.Done()
	defer unix.Close(fd)
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		select {
		case <-g.stop:
			return
		case <-tick.C:
			g.keepReserve()
		default:
		}
		n, err := unix.Poll(pfd, 100)
		if err != nil || n == 0 {
			continue
		}
		n, err = unix.Read(fd, buf)
		for off := 0; err == nil && off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			nameBytes := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
			g.allocate(strings.TrimRight(string(nameBytes), "\x00"))
			off += unix.SizeofInotifyEvent + int(ev.Len)
		}
	}
}

// keepReserve makes the reserve file again when there is room for it and
// the floor besides.
func (g *spaceGuard) keepReserve() {
	if fi, err := os.Stat(g.reservePath()); err == nil && fi.Size() == reserveSize(g.memTable) {
		return
	}
	free, _, err := freeBytes(g.dir)
	if err != nil || free < g.need+reserveSize(g.memTable) {
		return
	}
	f, err := os.OpenFile(g.reservePath()+".new", os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return
	}
	err = unix.Fallocate(int(f.Fd()), 0, 0, reserveSize(g.memTable))
	if err == nil {
		err = f.Sync()
	}
	f.Close()
	if err == nil {
		err = os.Rename(g.reservePath()+".new", g.reservePath())
	}
	if err != nil {
		os.Remove(g.reservePath() + ".new")
	}
}

// admit reports ErrFull when the filesystem has less free space than the
// index may need. It asks the filesystem every 100 ms at most, and at
// every write once free space is near the floor.
func (g *spaceGuard) admit() error { return g.admitAbove(false) }

// admitAbove is admit, down to the lower floor for a write that makes
// room (freeing).
func (g *spaceGuard) admitAbove(freeing bool) error {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.free < 4*g.need || time.Since(g.at) > 100*time.Millisecond {
		free, _, err := freeBytes(g.dir)
		if err != nil {
			return fmt.Errorf("index: %w", err)
		}
		g.free, g.at = free, time.Now()
	}
	if freeing && g.free >= g.needLow {
		return nil
	}
	if g.free >= g.need {
		if g.full {
			g.full = false
			// A log made while there was no room may have holes left.
			g.allocateAll()
			g.log.Info("the cache filesystem has room again: the index takes writes", "free_bytes", g.free)
		}
		return nil
	}
	if !g.full {
		g.full = true
		g.log.Error("the cache filesystem is full: the index takes no write (writers get ENOSPC) until there is room; reads go on",
			"free_bytes", g.free, "index_needs_bytes", g.need, "dir", g.dir)
	}
	return fmt.Errorf("%w (%d bytes free, the index keeps %d)", ErrFull, g.free, g.need)
}

// Full reports whether the index takes no write now for want of space.
func (ix *DB) Full() bool { return ix.guard.admit() != nil }

// close stops the watcher.
func (g *spaceGuard) close() {
	if g == nil {
		return
	}
	close(g.stop)
	g.stopped.Wait()
}
