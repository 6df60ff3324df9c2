package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// fetch makes a store-only file local. Concurrent callers for one path
// share a single GET. The fetch runs on its own deadline, so one reader
// giving up does not abort the download the others wait for.
func (c *Cache) fetch(ctx context.Context, p string) error {
	ch := c.fetches.DoChan(p, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.Background(), c.opts.StoreTimeout)
		defer cancel()
		return nil, c.fetchOnce(fctx, p)
	})
	select {
	case res := <-ch:
		return res.Err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// maxFetchAttempts bounds resumed GETs after a body ends early.
const maxFetchAttempts = 3

func (c *Cache) fetchOnce(ctx context.Context, p string) error {
	var r record
	var ok bool
	if err := c.view(func(txn *badger.Txn) error {
		var err error
		r, ok, err = getRecord(txn, p)
		return err
	}); err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("fetch %q: %w", p, ErrNotExist)
	}
	if r.Dir || r.State != Remote {
		return nil
	}
	if err := c.admit(ctx, r.Size, false); err != nil {
		return fmt.Errorf("fetch %q: %w", p, err)
	}
	tmp, err := os.CreateTemp(c.tmpDir, "fetch-*")
	if err != nil {
		return fmt.Errorf("fetch %q: %w", p, err)
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name()) // no-op once renamed
	}()
	start := time.Now()
	size, err := c.download(ctx, p, tmp)
	if err != nil {
		c.noteStoreError(err)
		if isNotFound(err) {
			c.forgetRemote(p, r)
			return fmt.Errorf("fetch %q: gone from the store: %w", p, ErrNotExist)
		}
		return fmt.Errorf("fetch %q: %w: %w", p, ErrStore, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("fetch %q: %w", p, err)
	}
	id := newDataID()
	dst := c.dataPath(id)
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return fmt.Errorf("fetch %q: %w", p, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("fetch %q: %w", p, err)
	}
	c.log.Debug("fetched", "path", p, "bytes", size, "took", time.Since(start))

	c.mu.Lock()
	defer c.mu.Unlock()
	installed := false
	err = c.update(func(t *tx) error {
		cur, ok, err := t.get(p)
		if err != nil || !ok || cur.Dir || cur.Ino != r.Ino || cur.State != Remote {
			// Deleted, replaced or fetched by someone else meanwhile.
			return err
		}
		cur.State, cur.Data, cur.Size = Clean, id, size
		installed = true
		return t.put(p, cur)
	})
	if !installed {
		c.removeData(id)
	}
	if err == nil && installed {
		c.verified[p] = time.Now()
	}
	return err
}

// download copies the object into w, resuming with a ranged GET when a body
// ends before its Content-Length says (a truncated body is never taken as
// the whole object).
func (c *Cache) download(ctx context.Context, p string, w io.Writer) (int64, error) {
	var got, total int64 = 0, -1
	var lastErr error
	for attempt := 0; attempt < maxFetchAttempts; attempt++ {
		body, n, err := c.store.Get(ctx, p, got)
		if err != nil {
			if isNotFound(err) || ctx.Err() != nil {
				return 0, err
			}
			lastErr = err
			continue
		}
		if total < 0 {
			total = n
		} else if got+n != total {
			body.Close()
			return 0, fmt.Errorf("object changed while downloading (size %d, then %d)", total, got+n)
		}
		copied, err := io.Copy(w, body)
		body.Close()
		got += copied
		if got == total {
			return got, nil
		}
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		lastErr = fmt.Errorf("body ended at %d of %d bytes: %w", got, total, err)
		if ctx.Err() != nil {
			break
		}
	}
	if lastErr == nil {
		lastErr = errors.New("no attempt made")
	}
	return 0, lastErr
}

// forgetRemote drops a store-only record whose object has disappeared
// (deleted by another host).
func (c *Cache) forgetRemote(p string, r record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if of := c.open[p]; of != nil && of.dirty.Load() {
		return
	}
	err := c.update(func(t *tx) error {
		cur, ok, err := t.get(p)
		if err != nil || !ok || cur.Ino != r.Ino || (cur.State != Remote && cur.State != Clean) {
			return err
		}
		if pend, err := hasPending(t.txn, p); err != nil || pend {
			return err
		}
		c.removeData(cur.Data)
		return t.del(p)
	})
	if err != nil {
		c.log.Error("index update failed", "path", p, "err", err)
	}
	delete(c.verified, p)
}
