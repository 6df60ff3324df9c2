package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sync/errgroup"
)

// The requests of a fetch: one GET of the whole object, or ranged GETs
// side by side for a large one, each checked as it arrives (verify.go).

// getInto copies the object at key, which the index says holds size
// bytes, into the empty file f, and checks it (verify.go): a download
// that fails its check is made again from the start, and the last
// failure is returned. It returns the bytes' CRC-32C and the object's user
// metadata, which the response carried. onMeta, when set, is given that
// metadata as soon as a response has brought it, before its body, for an
// object fetched with one GET (a ranged fetch learns it only at the end).
func (c *Cache) getInto(ctx context.Context, key string, f *os.File, size int64, onMeta func(map[string]string)) (uint32, map[string]string, error) {
	var lastErr error
	for try := 0; try < verifyTries; try++ {
		if try > 0 {
			if err := f.Truncate(0); err != nil {
				return 0, nil, err
			}
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return 0, nil, err
			}
		}
		var v *verifier
		var err error
		if size < rangedFetchMin {
			v, err = c.downloadWhole(ctx, key, f, size, onMeta)
		} else {
			v, err = c.downloadRanges(ctx, key, f, size)
		}
		if err == nil {
			err = v.check()
		}
		if err == nil {
			return v.crc.Sum32(), v.meta, nil
		}
		if !errors.Is(err, errCorrupt) {
			return 0, nil, err
		}
		c.stats.corrupt.Add(1)
		lastErr = err
		c.log.Warn("the store sent bytes that fail their check; fetching them again", "key", key, "try", try+1, "err", err)
	}
	c.log.Error("the store keeps sending bytes that fail their check: nothing is cached and readers get EIO",
		"key", key, "tries", verifyTries, "err", lastErr)
	return 0, nil, lastErr
}

// downloadRanges fetches a large object as parallel ranged GETs into f,
// then checks it whole against what a HEAD says of it.
func (c *Cache) downloadRanges(ctx context.Context, key string, f *os.File, size int64) (*verifier, error) {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(rangeConcurrency)
	for off := int64(0); off < size; off += rangeChunk {
		n := min(rangeChunk, size-off)
		g.Go(func() error { return c.downloadRange(gctx, key, io.NewOffsetWriter(f, off), off, n, size) })
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	// The ranges say nothing of the whole: make sure the object did not
	// grow meanwhile, or we would serve a prefix of it, and check it.
	now, err := c.store.Head(ctx, key)
	if err != nil {
		return nil, err
	}
	if now.Size != size {
		return nil, fmt.Errorf("object changed while downloading (size %d, now %d)", size, now.Size)
	}
	v := newVerifier(now)
	if _, err := io.Copy(v, io.NewSectionReader(f, 0, size)); err != nil {
		return nil, err
	}
	return v, nil
}

// downloadRange fetches n bytes from off into w, retrying a short body.
// A range that the store announces with another length, or as part of
// an object of another size than the index's, fails the check.
func (c *Cache) downloadRange(ctx context.Context, key string, w io.Writer, off, n, size int64) error {
	var lastErr error
	for t := newTries(); t.next(ctx); {
		body, err := c.store.Get(ctx, key, off, n)
		if err != nil {
			if isNotFound(err) {
				return err
			}
			lastErr = err
			continue
		}
		if body.Len != n || (body.Size >= 0 && body.Size != size) {
			body.Close()
			return fmt.Errorf("%w: range %d+%d of %q came back as %d bytes of an object of %d, not %d", errCorrupt, off, n, key, body.Len, body.Size, size)
		}
		copied, err := io.CopyN(w, body, n)
		body.Close()
		if copied == n {
			return nil
		}
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		lastErr = fmt.Errorf("range %d+%d ended after %d bytes: %w", off, n, copied, err)
		off, n = off+copied, n-copied
		// w advanced by copied bytes; the next attempt continues there.
	}
	return errorOr(ctx.Err(), lastErr)
}

// downloadWhole copies the object, which the index says holds size
// bytes, into f, resuming with a ranged GET when a body ends before its
// Content-Length says (a truncated body is never taken as the whole
// object). An object the store announces with another size, or a body
// longer than announced, fails the check at once.
func (c *Cache) downloadWhole(ctx context.Context, key string, f *os.File, size int64, onMeta func(map[string]string)) (*verifier, error) {
	var got int64
	var v *verifier
	var lastErr error
	for t := newTries(); t.next(ctx); {
		body, err := c.store.Get(ctx, key, got, -1)
		if err != nil {
			if isNotFound(err) || ctx.Err() != nil {
				return nil, err
			}
			lastErr = err
			continue
		}
		if got+body.Len != size || (body.Size >= 0 && body.Size != size) {
			body.Close()
			return nil, fmt.Errorf("%w: the store announced %d bytes (of an object of %d) from offset %d of an object of %d", errCorrupt, body.Len, body.Size, got, size)
		}
		if v == nil {
			v = newVerifier(body.Object)
			if onMeta != nil {
				onMeta(body.Object.Meta)
			}
		}
		// One byte past the announced end, to see a body that runs on.
		copied, err := io.CopyN(io.MultiWriter(f, v), body, size-got+1)
		body.Close()
		got += copied
		switch {
		case got == size:
			return v, nil
		case got > size:
			return nil, fmt.Errorf("%w: the body runs past the %d bytes announced", errCorrupt, size)
		}
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		lastErr = fmt.Errorf("body ended at %d of %d bytes: %w", got, size, err)
	}
	return nil, errorOr(ctx.Err(), lastErr)
}
