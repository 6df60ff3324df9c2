package cache

import (
	"context"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/index"
)

// maxLinkSize bounds a symlink's target, as PATH_MAX does; an object the
// store marks as a link but holds more is not one.
const maxLinkSize = 4096

// Mknod makes a FIFO, socket or device node at p. It lives in the index
// only (state Special): it has no bytes, is never uploaded, and another
// host does not see it.
func (c *Cache) Mknod(ctx context.Context, p string, kind, rdev uint32, nf NewFile) (Attr, error) {
	switch kind {
	case syscall.S_IFIFO, syscall.S_IFSOCK, syscall.S_IFCHR, syscall.S_IFBLK:
	default:
		return Attr{}, wrapPath("mknod", p, ErrInvalid)
	}
	if err := c.checkPath(p); err != nil {
		return Attr{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var r index.Record
	queue := false
	err := c.updateLocked(func(t *index.Tx) error {
		if _, ok, err := t.Get(p); err != nil || ok {
			return errorOr(err, ErrExist)
		}
		// An object at this key (a delete owed, a hidden one) must go:
		// the node replaces it, and the store keeps nothing of nodes.
		ino, tomb, err := c.newFileTxn(t, p)
		if err != nil {
			return err
		}
		r = index.Record{State: Special, Ino: ino, MTime: time.Now().UnixNano(), Kind: kind, Rdev: rdev, InStore: tomb}
		nf.stamp(&r)
		if err := t.Put(p, r); err != nil {
			return err
		}
		if err := touchParent(t, p, r.MTime); err != nil {
			return err
		}
		if tomb {
			queue = true
			return t.SetPending(p)
		}
		return nil
	})
	if err != nil {
		return Attr{}, wrapPath("mknod", p, err)
	}
	c.negative.remove(p)
	if queue {
		c.q.Add(p)
	}
	return attrOf(r), nil
}

// Symlink makes a symlink at p to target. It is uploaded as a small
// object holding the target, its mode marking it a link (s3fs's
// convention), so that s3fs and other hosts read it back as one.
func (c *Cache) Symlink(ctx context.Context, p, target string, nf NewFile) (Attr, error) {
	if target == "" || len(target) > maxLinkSize {
		return Attr{}, wrapPath("symlink", p, ErrInvalid)
	}
	nf.Link = target
	h, a, err := c.Create(ctx, p, os.O_RDWR|os.O_CREATE|os.O_EXCL, nf)
	if err != nil {
		return Attr{}, err
	}
	_, err = h.WriteAt(ctx, []byte(target), 0)
	if ferr := h.Flush(ctx); err == nil {
		err = ferr
	}
	h.Release(ctx)
	if err != nil {
		return Attr{}, wrapPath("symlink", p, err)
	}
	a.Size = int64(len(target))
	return a, nil
}

// Readlink returns the target of the symlink at p. A link learned from
// the store is read from its object the first time, and kept.
func (c *Cache) Readlink(ctx context.Context, p string) (string, error) {
	r, ok, err := c.readRecord(p)
	switch {
	case err != nil:
		return "", wrapPath("readlink", p, err)
	case !ok:
		return "", wrapPath("readlink", p, ErrNotExist)
	case r.Kind != syscall.S_IFLNK:
		return "", wrapPath("readlink", p, ErrInvalid)
	case r.Link != "":
		return r.Link, nil
	}
	target, err := c.readLinkObject(ctx, r.ObjectKey(p))
	if isNotFound(err) && r.MoveFrom != "" {
		target, err = c.readLinkObject(ctx, p) // moved meanwhile
	}
	if err != nil {
		return "", wrapPath("readlink", p, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	err = c.updateLocked(func(t *index.Tx) error {
		cur, ok, err := t.Get(p)
		if err != nil || !ok || cur.Ino != r.Ino || cur.Kind != syscall.S_IFLNK {
			return err
		}
		cur.Link = target
		return t.Put(p, cur)
	})
	return target, err
}

// readLinkObject reads a symlink's target from its object.
func (c *Cache) readLinkObject(ctx context.Context, p string) (string, error) {
	gctx, cancel := context.WithTimeout(ctx, c.opts.StoreTimeout)
	defer cancel()
	body, err := c.store.Get(gctx, p, 0, maxLinkSize+1)
	if err != nil {
		c.noteStoreError(err)
		return "", fmt.Errorf("%w: %w", ErrStore, err)
	}
	defer body.Close()
	b, err := io.ReadAll(io.LimitReader(body, maxLinkSize+1))
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrStore, err)
	}
	if len(b) == 0 || len(b) > maxLinkSize {
		return "", fmt.Errorf("object marked as a symlink holds %d bytes: %w", len(b), ErrInvalid)
	}
	return string(b), nil
}
