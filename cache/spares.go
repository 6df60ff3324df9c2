package cache

import (
	"context"
	"os"
	"sync"
	"time"
)

// spareTarget is how many empty data files are kept made ahead of time.
// A burst of uploads larger than this creates the rest on demand.
const spareTarget = 32

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

func newSpares() *spares { return &spares{kick: make(chan struct{}, 1)} }

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

// newData returns an empty data file for a new version, a spare when one
// is ready. Its modification time is now, as a new file's would be.
func (c spaceKeeper) newData() (string, *os.File, error) {
	id, ok := c.spares.take()
	if !ok {
		return c.createData()
	}
	p := c.dataPath(id)
	now := time.Now()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err == nil {
		if err = os.Chtimes(p, now, now); err != nil {
			f.Close()
		}
	}
	if err != nil {
		c.removeData(id)
		return c.createData()
	}
	return id, f, nil
}

// fillSpares keeps spareTarget spares ready until ctx ends, then removes
// them. A failure (a full cache filesystem) waits for the next take.
func (c spaceKeeper) fillSpares(ctx context.Context) {
	s := c.spares
	defer func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, id := range s.ids {
			c.removeData(id)
		}
		s.ids = nil
	}()
	for {
		for s.count() < spareTarget && ctx.Err() == nil {
			id, f, err := c.createData()
			if err != nil {
				c.log.Debug("making a spare data file failed", "err", err)
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
