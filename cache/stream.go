package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// storeStream serves the reads of one handle on a file that cannot be
// kept in the cache (larger than it could ever hold, or no room now)
// straight from the store, keeping nothing. One GET runs from a read's
// offset to the end of the object and the next read continues it where
// the last one ended, so a sequential reader costs one request; a seek
// costs another.
type storeStream struct {
	mu     sync.Mutex // held for a whole read; guards the fields below
	body   io.ReadCloser
	pos    int64 // the object offset body reads next
	cancel context.CancelFunc
}

// close ends the GET in flight, if any.
func (s *storeStream) close() {
	if s.body != nil {
		s.body.Close()
		s.cancel()
		s.body, s.cancel = nil, nil
	}
}

// readStream reads into b at off from the store (see storeStream). The
// object's size is the one the handle was opened with.
func (h *Handle) readStream(ctx context.Context, b []byte, off int64) (int, error) {
	c, s := h.c, &h.stream
	s.mu.Lock()
	defer s.mu.Unlock()
	c.mu.Lock()
	path, size := h.of.path, h.of.attr.Size
	c.mu.Unlock()
	p, err := c.objectKeyOf(path)
	if err != nil {
		return 0, err
	}
	if off >= size {
		return 0, nil
	}
	want := b[:min(int64(len(b)), size-off)]
	var lastErr error
	for t := newTries(); t.next(ctx); {
		if s.body == nil || s.pos != off {
			s.close()
			// The GET outlives this read (the next one continues it), so
			// it runs on a context of its own.
			gctx, cancel := context.WithCancel(context.Background())
			body, err := c.store.Get(gctx, p, off, -1)
			n := body.Len
			if err != nil {
				cancel()
				c.noteStoreError(err)
				if isNotFound(err) {
					if now, err := c.objectKeyOf(path); err == nil && now != p {
						p = now // a rename's move finished meanwhile
						continue
					}
					return 0, fmt.Errorf("read %q: gone from the store: %w", p, ErrNotExist)
				}
				lastErr = err
				continue
			}
			if off+n != size {
				body.Close()
				cancel()
				return 0, fmt.Errorf("read %q: %w: the object changed (size %d, now %d)", p, ErrStore, size, off+n)
			}
			s.body, s.pos, s.cancel = body, off, cancel
		}
		// A stalled body or an interrupted caller ends the GET; the next
		// read starts another.
		stall := time.AfterFunc(c.opts.StoreTimeout, s.cancel)
		stop := context.AfterFunc(ctx, s.cancel)
		n, err := io.ReadFull(s.body, want)
		stall.Stop()
		stop()
		s.pos += int64(n)
		c.stats.bytesDown.Add(uint64(n))
		if err == nil {
			c.noteStoreOK()
			return n, nil
		}
		s.close()
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		if n > 0 {
			return n, nil // a short read; the caller asks again for the rest
		}
		lastErr = err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("read %q: %w: %w", p, ErrStore, lastErr)
}

// streamsOn reports whether err from making the file local means its
// readers are to be served from the store instead.
func (h *Handle) streamsOn(err error) bool {
	if !h.writable && errors.Is(err, errNoRoom) {
		h.fromStore.Store(true)
		return true
	}
	return false
}
