// Package datafiles keeps the cache's data files: one file per version of
// a file's bytes, named by a random id and fanned out by its first two
// characters, a pool of empty ones made ahead of time, and the cache
// filesystem's free space, sampled.
package datafiles

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Dir is a data directory.
type Dir struct {
	root   string
	born   func(id string)
	log    *slog.Logger
	spares spares
	free   freeSpace
}

// New returns the data directory at root. born, if not nil, is told of
// every new id before its file exists (the orphan sweep must not take a
// file it cannot yet place).
func New(root string, born func(id string), log *slog.Logger) *Dir {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Dir{root: root, born: born, log: log}
	d.spares.kick = make(chan struct{}, 1)
	d.free.dir = root
	return d
}

// Root is the directory's path.
func (d *Dir) Root() string { return d.root }

// NewID names a new data file.
func (d *Dir) NewID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	id := hex.EncodeToString(b[:])
	if d.born != nil {
		d.born(id)
	}
	return id
}

// Path is where the data file named id lives; the two-character fan-out
// keeps directories small.
func (d *Dir) Path(id string) string {
	return filepath.Join(d.root, id[:2], id)
}

// Create makes a new, empty data file.
func (d *Dir) Create() (string, *os.File, error) {
	id := d.NewID()
	p := d.Path(id)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrNotExist) {
		if err = os.MkdirAll(filepath.Dir(p), 0o700); err == nil {
			f, err = os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		}
	}
	if err != nil {
		return "", nil, fmt.Errorf("create data file: %w", err)
	}
	return id, f, nil
}

// Remove removes the data file named id; "" names none.
func (d *Dir) Remove(id string) {
	if id == "" {
		return
	}
	if err := os.Remove(d.Path(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		d.log.Warn("could not remove data file", "id", id, "err", err)
	}
}

// SpareTarget is how many empty data files are kept made ahead of time.
// A burst of uploads larger than this creates the rest on demand.
const SpareTarget = 32

// spares keeps empty data files made ahead of time, so that creating a
// file does not wait for the cache filesystem to make one: an inode and
// a directory entry cost hundreds of microseconds on ext4, more than the
// rest of a create. Spares are made only after Start, so the orphan sweep
// (which skips files newer than the open) never takes them; a clean Close
// removes them and an unclean stop leaves them to that sweep.
type spares struct {
	mu   sync.Mutex
	ids  []string // made, empty and closed: open descriptors stay few
	kick chan struct{}
}

// take returns the id of a spare data file, or ok false when none is ready.
func (s *spares) take() (id string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(s.ids); n > 0 {
		id, s.ids = s.ids[n-1], s.ids[:n-1]
		ok = true
	}
	select {
	case s.kick <- struct{}{}:
	default:
	}
	return id, ok
}

func (s *spares) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ids)
}

// New returns an empty data file for a new version, a spare when one is
// ready. Its modification time is now, as a new file's would be.
func (d *Dir) New() (string, *os.File, error) {
	id, ok := d.spares.take()
	if !ok {
		return d.Create()
	}
	p := d.Path(id)
	now := time.Now()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err == nil {
		if err = os.Chtimes(p, now, now); err != nil {
			f.Close()
		}
	}
	if err != nil {
		d.Remove(id)
		return d.Create()
	}
	return id, f, nil
}

// FillSpares keeps SpareTarget spares ready until ctx ends, then removes
// them. A failure (a full cache filesystem) waits for the next take.
func (d *Dir) FillSpares(ctx context.Context) {
	s := &d.spares
	defer func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, id := range s.ids {
			d.Remove(id)
		}
		s.ids = nil
	}()
	for {
		for s.count() < SpareTarget && ctx.Err() == nil {
			id, f, err := d.Create()
			if err != nil {
				d.log.Debug("making a spare data file failed", "err", err)
				break
			}
			f.Close()
			s.mu.Lock()
			s.ids = append(s.ids, id)
			s.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		}
	}
}

// Spares is how many spare data files are ready.
func (d *Dir) Spares() int { return d.spares.count() }

// freeSpace samples the cache filesystem's free bytes at most every
// SampleEvery, so the write path does not pay a statfs per write.
type freeSpace struct {
	dir string

	mu    sync.Mutex // guards the fields below
	at    time.Time
	free  int64
	total int64
}

// SampleEvery is how often the free space is sampled at most.
const SampleEvery = 100 * time.Millisecond

// get returns free and total bytes; fresh forces a new sample.
func (f *freeSpace) get(fresh bool) (free, total int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fresh || time.Since(f.at) > SampleEvery {
		var st syscall.Statfs_t
		if err := syscall.Statfs(f.dir, &st); err == nil {
			f.free = int64(st.Bavail) * int64(st.Bsize)
			f.total = int64(st.Blocks) * int64(st.Bsize)
			f.at = time.Now()
		}
	}
	return f.free, f.total
}

// consumed lowers the sampled free space by n bytes just written, so a
// burst of writes between samples is not invisible.
func (f *freeSpace) consumed(n int64) {
	f.mu.Lock()
	f.free -= n
	f.mu.Unlock()
}

// Free returns the data directory's filesystem's free and total bytes,
// sampled at most every 100 ms; fresh forces a new sample.
func (d *Dir) Free(fresh bool) (free, total int64) { return d.free.get(fresh) }

// Consumed lowers the sampled free space by n bytes just written, so a
// burst of writes between samples is not invisible.
func (d *Dir) Consumed(n int64) { d.free.consumed(n) }
