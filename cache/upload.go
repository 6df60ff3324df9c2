package cache

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/index"
)

// syncPath brings the store's object at p in line with the index: it uploads
// a dirty file or deletes a tombstoned key. again is true when the index
// changed while the request ran and p must be looked at once more.
func (c *Cache) syncPath(ctx context.Context, p string) (again bool, err error) {
	if isFolderKey(p) {
		return false, c.deleteFolder(ctx, p)
	}
	c.mu.Lock()
	var (
		r        index.Record
		upload   bool
		tomb     bool
		data     *os.File
		writing  bool
		metaOnly bool
		move     bool
	)
	err = c.updateFreeingLocked(func(t *index.Tx) error {
		pending, err := t.HasPending(p)
		if err != nil || !pending {
			return err
		}
		if wait, err := waitForMove(t, p); err != nil || wait {
			writing = wait // nothing to do now
			return err
		}
		var ok bool
		r, ok, err = t.Get(p)
		switch {
		case err != nil:
			return err
		case !ok:
			tomb = true
			return nil
		case r.Dir:
			// A directory was made where a removed file's delete is
			// still owed: the object must still go.
			tomb = true
			return nil
		case r.Stored() && r.MoveFrom != "":
			move = true
			return nil
		case r.Stored() && r.MetaOwed:
			metaOnly = true
			return nil
		case r.Stored():
			return t.ClearPending(p)
		case r.State == Local || r.State == Special:
			// A local-only file replaced an object: delete the object.
			tomb = r.InStore
			if !tomb {
				return t.ClearPending(p)
			}
			return nil
		}
		if of := c.open[p]; of != nil && of.dirty.Load() {
			// Still being written: the writer's close queues it again.
			writing = true
			return nil
		}
		f, err := os.Open(c.data.Path(r.Data))
		if err != nil {
			return fmt.Errorf("open data file of %q: %w", p, err)
		}
		data = f
		upload = true
		r.State = Uploading
		r.InStore = true // from here on the store may hold some version
		return t.Put(p, r)
	})
	c.mu.Unlock()
	if err != nil {
		if data != nil {
			data.Close()
		}
		return false, err
	}
	switch {
	case writing:
		return false, nil
	case tomb:
		return c.deleteRemote(ctx, p)
	case move:
		return c.moveObject(ctx, p, r)
	case metaOnly:
		return c.sendMeta(ctx, p, r)
	case upload:
		defer data.Close()
		return c.uploadFile(ctx, p, r, data)
	}
	return false, nil
}

func (c *Cache) uploadFile(ctx context.Context, p string, r index.Record, data *os.File) (bool, error) {
	fi, err := data.Stat()
	if err != nil {
		return false, fmt.Errorf("stat data file of %q: %w", p, err)
	}
	size := fi.Size()
	start := time.Now()
	// The object carries the CRC of the bytes it is sent with, so every
	// host that fetches it can check them. A write meanwhile makes the
	// two differ; it also makes a newer generation, whose upload follows.
	crc, err := crcOfFile(data, size)
	if err != nil {
		return false, fmt.Errorf("read data file of %q: %w", p, err)
	}
	r.CRC32C, r.HasCRC = crc, true
	if err := c.store.Put(ctx, p, data, size, metaOf(r)); err != nil {
		return false, err
	}
	c.log.Debug("uploaded", "path", p, "bytes", size, "took", time.Since(start))
	c.noteStoreOK()
	c.stats.uploads.Add(1)
	c.stats.bytesUp.Add(uint64(size))

	c.mu.Lock()
	defer c.mu.Unlock()
	again := false
	moveSrc := ""
	err = c.updateFreeingLocked(func(t *index.Tx) error {
		cur, ok, err := t.Get(p)
		if err != nil || !ok {
			// Unlinked meanwhile: the tombstone's delete runs next.
			again = ok || err == nil
			return err
		}
		if cur.Gen != r.Gen || cur.Dir || cur.State != Uploading {
			again = true // a newer version is owed
			return nil
		}
		if of := c.open[p]; of != nil && of.dirty.Load() {
			return nil
		}
		cur.State = Clean
		cur.Size = size
		cur.CRC32C, cur.HasCRC = crc, true
		cur.StoreMTime = 0 // unknown until a HEAD tells us
		if cur.MoveFrom != "" {
			// Its bytes went up whole: the old key's object can go.
			moveSrc, cur.MoveFrom = cur.MoveFrom, ""
		}
		if cur.MetaOwed && cur.CTime != r.CTime {
			// Changed while the bytes went up: the metadata is owed.
			again = true
			return t.Put(p, cur)
		}
		cur.MetaOwed = false
		if err := t.Put(p, cur); err != nil {
			return err
		}
		return t.ClearPending(p)
	})
	if err == nil && !again {
		c.verified[p] = time.Now()
	}
	if err == nil && moveSrc != "" {
		c.q.Add(moveSrc)
	}
	return again, err
}

// maxCopySize is the largest object one CopyObject can copy (5 GiB): a
// larger one keeps its old metadata in the store, and this host's index
// holds the new; one a rename moves goes up again instead. (A var for the
// tests of that.)
var maxCopySize int64 = 5 << 30

// sendMeta sends a metadata-only update of p (see SetAttr): one request,
// no bytes. again is true when the metadata changed meanwhile.
func (c *Cache) sendMeta(ctx context.Context, p string, r index.Record) (again bool, err error) {
	if r.Size >= maxCopySize {
		c.log.Warn("an object over 5 GiB keeps its old owner, mode and time in the store", "path", p)
	} else if err := c.store.Copy(ctx, p, p, metaOf(r)); err != nil && !isNotFound(err) {
		// (Not found: deleted by another host; revalidation settles it.)
		return false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	err = c.updateFreeingLocked(func(t *index.Tx) error {
		cur, ok, err := t.Get(p)
		if err != nil || !ok || cur.Ino != r.Ino || !cur.MetaOwed {
			return err
		}
		if cur.CTime != r.CTime || (cur.State != Clean && cur.State != Remote) {
			again = true
			return nil
		}
		cur.MetaOwed = false
		cur.StoreMTime = 0 // the copy gave the object a new time
		if err := t.Put(p, cur); err != nil {
			return err
		}
		return t.ClearPending(p)
	})
	return again, err
}

// deleteFolder sends the DELETE of a removed directory's folder key k
// (see folderKey) once no delete is owed below it; until then it waits,
// and the last delete below queues it again (wakeFolders).
func (c *Cache) deleteFolder(ctx context.Context, k string) error {
	dir := strings.TrimSuffix(k, "/")
	var owed, busy, exists bool
	err := c.ix.View(func(txn index.View) error {
		var err error
		if owed, err = txn.HasPending(k); err != nil || !owed {
			return err
		}
		if exists, err = txn.IsDir(dir); err != nil || exists {
			return err
		}
		busy = txn.HasPendingBelow(k)
		return nil
	})
	if err != nil || !owed || busy {
		return err
	}
	if !exists {
		if err := c.deletes.delete(ctx, k); err != nil {
			return err
		}
		c.log.Debug("deleted folder from store", "path", dir)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var wake []string
	err = c.updateFreeingLocked(func(t *index.Tx) error {
		if err := t.ClearPending(k); err != nil {
			return err
		}
		wake = foldersOwedAbove(t.View, dir)
		return nil
	})
	c.queueAll(wake)
	return err
}

// foldersOwedAbove returns the folder deletes owed above p, which the end
// of the work owed at p may let go (see deleteFolder). They are queued
// once the transaction that ended it has committed, so that they see it.
func foldersOwedAbove(txn index.View, p string) []string {
	var out []string
	for d := index.ParentOf(p); d != ""; d = index.ParentOf(d) {
		if owed, err := txn.HasPending(folderKey(d)); err == nil && owed {
			out = append(out, folderKey(d))
		}
	}
	return out
}

// queueAll queues every path in paths.
func (c *Cache) queueAll(paths []string) {
	for _, p := range paths {
		c.q.Add(p)
	}
}

func (c *Cache) deleteRemote(ctx context.Context, p string) (bool, error) {
	if err := c.deletes.delete(ctx, p); err != nil {
		return false, err
	}
	c.log.Debug("deleted from store", "path", p)
	c.stats.deletes.Add(1)
	if wait := time.Until(c.settledAt); wait > 0 {
		// A PUT the last run abandoned may still land after this DELETE:
		// the delete stays owed, and is sent again once it cannot.
		c.q.AddAfter(p, wait)
		return false, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	again := false
	var wake []string
	err := c.updateFreeingLocked(func(t *index.Tx) error {
		r, ok, err := t.Get(p)
		switch {
		case err != nil:
			return err
		case ok && r.Dir:
			// The key is a directory now; nothing else is owed.
		case ok && r.State == Local && r.InStore:
			// The object a local-only file replaced is gone now.
			r.InStore = false
			if err := t.Put(p, r); err != nil {
				return err
			}
		case ok:
			// Created again meanwhile: its upload is owed now.
			again = true
			return nil
		}
		if err := t.ClearPending(p); err != nil {
			return err
		}
		wake = foldersOwedAbove(t.View, p)
		return nil
	})
	if err == nil {
		// The key, and the directories that held it in the store's view.
		now := time.Now()
		for k := p; k != ""; k = index.ParentOf(k) {
			c.settled.set(k, now)
		}
		c.queueAll(wake)
	}
	return again, err
}
