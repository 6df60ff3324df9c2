package cache

import (
	"context"
	"errors"
	"io"
)

// ReadAt reads from the file. If only the store has it, the read is
// served from the bytes as they arrive (see readArriving), or once the
// file is local.
func (h *Handle) ReadAt(ctx context.Context, b []byte, off int64) (int, error) {
	if h.fromStore.Load() {
		return h.readStream(ctx, b, off)
	}
	if n, err, ok := h.readArriving(ctx, b, off); ok {
		if h.streamsOn(err) {
			return h.readStream(ctx, b, off)
		}
		return n, err
	}
	if err := h.ensureData(ctx); err != nil {
		if h.streamsOn(err) {
			return h.readStream(ctx, b, off)
		}
		return 0, err
	}
	h.of.mu.RLock()
	defer h.of.mu.RUnlock()
	n, err := h.of.data.ReadAt(b, off)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return n, err
}

// readArriving serves a read of a file only the store has from the bytes
// of its download that have arrived, so the first bytes of a cache miss
// do not wait for the whole object. ok is false when the read is to be
// served from the local copy (there is one, or the download has ended, or
// it is one that is not read as it arrives).
func (h *Handle) readArriving(ctx context.Context, b []byte, off int64) (n int, err error, ok bool) {
	if !h.Streams() {
		return 0, nil, false
	}
	d := h.c.startFetch(h.path())
	for {
		wake := d.progress.C()
		if n, err, ready := d.readAt(b, off); ready {
			return n, err, true
		}
		if d.done() {
			// Installed: read the local copy. Failed: say why, rather
			// than start another download and wait as long again.
			return 0, d.err, d.err != nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return 0, ctx.Err(), true
		}
	}
}

// Prefetch starts fetching the file's bytes if only the store has them,
// without waiting: reads then find them arriving.
func (h *Handle) Prefetch() {
	if !h.Local() {
		h.c.startFetch(h.path())
	}
}
