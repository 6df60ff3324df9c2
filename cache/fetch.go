package cache

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/index"
	"golang.org/x/sync/semaphore"
)

// fetch makes a store-only file local. Concurrent callers for one path
// share a single download, which runs on its own deadline, so one reader
// giving up does not abort the download the others wait for.
func (c *Cache) fetch(ctx context.Context, p string) error {
	d := c.startFetch(p)
	select {
	case <-d.finished:
		return d.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// startFetch returns the download of p in flight, starting one if none is.
func (c *Cache) startFetch(p string) *download {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d := c.downloads[p]; d != nil {
		return d
	}
	d := newDownload()
	c.downloads[p] = d
	started := c.background(func(life context.Context) {
		fctx, cancel := context.WithTimeout(life, c.opts.StoreTimeout)
		err := c.fetchOnce(fctx, p, d)
		cancel()
		c.mu.Lock()
		delete(c.downloads, p)
		c.mu.Unlock()
		d.finish(err)
	})
	if !started {
		delete(c.downloads, p)
		d.finish(fmt.Errorf("fetch %q: %w", p, ErrClosed))
	}
	return d
}

func (c *Cache) fetchOnce(ctx context.Context, p string, d *download) error {
	r, ok, err := c.readRecord(p)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("fetch %q: %w", p, ErrNotExist)
	}
	if r.Dir || r.State != Remote {
		return nil
	}
	release, ok := c.fetchBudget.take(r.Size)
	if !ok {
		return fmt.Errorf("fetch %q: %w: %w (too many fetches in flight)", p, errNoRoom, ErrNoSpace)
	}
	defer release()
	if err := c.admitFetch(ctx, r.Size); err != nil {
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
	streaming := r.Size < rangedFetchMin
	if streaming {
		// Readers may read the scratch file once it is checked, before
		// it is installed; theirs is a descriptor of its own, as tmp is
		// closed before the file is installed.
		if err := d.begin(tmp.Name(), r.Size); err != nil {
			return fmt.Errorf("fetch %q: %w", p, err)
		}
	}
	start := time.Now()
	crc, meta, err := c.downloadRecord(ctx, p, r, tmp, func(meta map[string]string) {
		c.recordObjectMeta(p, r, meta)
		d.learnedMeta()
	})
	if err != nil {
		c.noteStoreError(err)
		if isNotFound(err) {
			c.forgetRemote(p, r)
			return fmt.Errorf("fetch %q: gone from the store: %w", p, ErrNotExist)
		}
		return fmt.Errorf("fetch %q: %w: %w", p, ErrStore, err)
	}
	size := r.Size // the check made sure of it
	if streaming {
		d.arrive(size)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("fetch %q: %w", p, err)
	}
	c.log.Debug("fetched", "path", p, "bytes", size, "took", time.Since(start))
	c.noteStoreOK()
	c.stats.misses.Add(1)
	c.stats.bytesDown.Add(uint64(size))
	return c.installFetched(p, r, tmp.Name(), size, crc, meta)
}

// downloadRecord writes r's object, checked (r.Size bytes), to the empty
// file f, and returns its CRC-32C. A 404 while r's server-side move was owed
// is asked again at the new key: the move finished meanwhile (it clears
// MoveFrom before deleting the old key) and nothing was written.
func (c *Cache) downloadRecord(ctx context.Context, p string, r index.Record, f *os.File, onMeta func(map[string]string)) (uint32, map[string]string, error) {
	crc, meta, err := c.getInto(ctx, r.ObjectKey(p), f, r.Size, onMeta)
	if isNotFound(err) && r.MoveFrom != "" {
		if cur, ok, rerr := c.readRecord(p); rerr == nil && ok && cur.Ino == r.Ino && cur.MoveFrom == "" {
			crc, meta, err = c.getInto(ctx, p, f, r.Size, onMeta)
		}
	}
	return crc, meta, err
}

// installFetched moves a fetched file into the data directory and makes
// the record Clean with it, unless the record was deleted, replaced or
// fetched by someone else meanwhile. A record learned from a listing
// takes the object's metadata from the GET's response (meta), as a HEAD
// would have given it.
func (c *Cache) installFetched(p string, r index.Record, tmp string, size int64, crc uint32, meta map[string]string) error {
	id := c.data.NewID()
	dst := c.data.Path(id)
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return fmt.Errorf("fetch %q: %w", p, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("fetch %q: %w", p, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	installed := false
	err := c.updateLocked(func(t *index.Tx) error {
		cur, ok, err := t.Get(p)
		if err != nil || !ok || cur.Dir || cur.Ino != r.Ino || cur.State != Remote {
			// Deleted, replaced or fetched by someone else meanwhile.
			return err
		}
		if cur.MetaUnknown && !c.opts.SkipObjectMeta {
			applyMeta(&cur, meta)
		}
		cur.State, cur.Data, cur.Size = Clean, id, size
		cur.CRC32C, cur.HasCRC = crc, true
		installed = true
		return t.Put(p, cur)
	})
	if !installed {
		c.data.Remove(id)
	}
	if err == nil && installed {
		c.verified[p] = time.Now()
	}
	return err
}

// fetchRoomWait bounds how long a fetch waits for the evictor to make
// room: past it, the reader is served from the store without a local copy
// rather than kept waiting (see Handle.readStream).
const fetchRoomWait = 2 * time.Second

// admitFetch admits a download of size bytes into the cache. One that
// could not fit even with every clean file evicted is refused at once,
// so that it evicts nothing: its readers read the store directly.
func (c *Cache) admitFetch(ctx context.Context, size int64) error {
	if c.ix.Full() {
		// It could not be recorded: served from the store instead.
		return fmt.Errorf("%w: %w", errNoRoom, index.ErrFull)
	}
	c.mu.Lock()
	err := c.couldHoldLocked(size)
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%w: %w", errNoRoom, err)
	}
	if err := c.admit(ctx, size, false, min(c.opts.SpaceWait, fetchRoomWait)); err != nil {
		return fmt.Errorf("%w: %w", errNoRoom, err)
	}
	return nil
}

// fetchBudget bounds the downloads into the cache in flight, by count and
// by bytes, so that cold reads (one user's many, or a crowd's) can make
// the cache evict no more than those downloads need. A read that finds no
// room in it is served from the store without a local copy (readStream),
// so it waits for nothing and evicts nothing.
type fetchBudget struct {
	count, bytes *semaphore.Weighted
	maxBytes     int64
}

// Fetches in flight: at most maxFetches, and at most a quarter of
// cache_max_size (1 GiB without one) of bytes, one object taking at most
// all of it.
const (
	maxFetches        = 32
	unboundFetchBytes = 1 << 30
)

func newFetchBudget(maxSize int64) fetchBudget {
	b := int64(unboundFetchBytes)
	if maxSize > 0 {
		b = max(maxSize/4, 1)
	}
	return fetchBudget{count: semaphore.NewWeighted(maxFetches), bytes: semaphore.NewWeighted(b), maxBytes: b}
}

// take reserves room for a download of size bytes without waiting; ok is
// false when there is none now.
func (f fetchBudget) take(size int64) (release func(), ok bool) {
	n := min(max(size, 1), f.maxBytes)
	if !f.count.TryAcquire(1) {
		return nil, false
	}
	if !f.bytes.TryAcquire(n) {
		f.count.Release(1)
		return nil, false
	}
	return func() { f.bytes.Release(n); f.count.Release(1) }, true
}

// errNoRoom marks a fetch refused for want of room in the cache: a reader
// then reads from the store, a writer (which needs a local copy) fails
// with the reason beneath (ENOSPC or EFBIG).
var errNoRoom = errors.New("no room to keep a local copy")

// Large objects are fetched as parallel ranged GETs of rangeChunk bytes.
const (
	rangedFetchMin   = 16 << 20
	rangeChunk       = 8 << 20
	rangeConcurrency = 4
)

// forgetRemote drops a record whose object has disappeared from the store
// (deleted by another host). The last copy of a version this host wrote
// is never dropped on one 404 (see ownUploadGone). It reports whether the
// file is still there.
func (c *Cache) forgetRemote(p string, r index.Record) (kept bool) {
	if isOwnUnconfirmed(r) && c.ownUploadStillThere(p, r) {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if of := c.open[p]; of != nil && of.dirty.Load() {
		return true
	}
	err := c.updateLocked(func(t *index.Tx) error {
		cur, ok, err := t.Get(p)
		if err != nil || !ok || !sameVersion(cur, r) || (cur.State != Remote && cur.State != Clean) {
			kept = ok
			return err
		}
		if pend, err := t.HasPending(p); err != nil || pend {
			kept = true
			return err
		}
		c.dropLocalCopyLocked(p, cur)
		return t.Del(p)
	})
	if err != nil {
		c.log.Error("index update failed", "path", p, "err", err)
		return true
	}
	delete(c.verified, p)
	return kept
}

// isOwnUnconfirmed reports whether r is a version this host uploaded that
// the store has not shown back since (by a HEAD or a LIST).
func isOwnUnconfirmed(r index.Record) bool {
	return r.State == Clean && r.StoreMTime == 0 && r.Data != ""
}

// ownUploadStillThere asks the store a second way (a LIST) about a
// version this host uploaded, after a 404 that followed the upload: it
// keeps the copy unless the object is really gone. If the LIST shows it,
// the store's time is recorded and it is there.
func (c *Cache) ownUploadStillThere(p string, r index.Record) bool {
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.StoreTimeout)
	defer cancel()
	f, err := c.store.Lookup(ctx, p, nil)
	size, mtime := f.Size, f.MTime
	switch {
	case err != nil:
		c.noteStoreError(err)
		return true // not shown gone: keep it
	case !f.File:
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	err = c.updateLocked(func(t *index.Tx) error {
		cur, ok, err := t.Get(p)
		if err != nil || !ok || cur.Ino != r.Ino || cur.Gen != r.Gen || !isOwnUnconfirmed(cur) || cur.Size != size {
			return err
		}
		cur.StoreMTime = mtime.UnixNano()
		return t.Put(p, cur)
	})
	return err == nil
}

// dropLocalCopyLocked removes the data file of a record that goes because the
// store no longer has the object. If this host wrote that version and the
// store never showed it back, the file is the last copy of bytes another
// host's delete removed, perhaps a late delete of an older version: it is
// kept in cache_dir/lost+found under its path, and the log says so.
// Callers hold c.mu.
func (c *Cache) dropLocalCopyLocked(p string, r index.Record) {
	if !isOwnUnconfirmed(r) {
		c.data.Remove(r.Data)
		return
	}
	dst := filepath.Join(c.opts.Dir, "lost+found", filepath.FromSlash(p))
	if _, err := os.Stat(dst); err == nil {
		dst += "." + time.Now().UTC().Format("20060102T150405.000000000")
	}
	err := os.MkdirAll(filepath.Dir(dst), 0o700)
	if err == nil {
		err = os.Rename(c.data.Path(r.Data), dst)
	}
	if err != nil {
		c.log.Error("could not keep the last copy of a file the store lost; it stays as a data file", "path", p, "data", r.Data, "err", err)
		return
	}
	c.log.Warn("another host deleted a file this host wrote before the store showed it back; its bytes are kept", "path", p, "kept_at", dst)
}
