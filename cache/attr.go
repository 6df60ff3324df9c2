package cache

import (
	"context"
	"os"
	"time"
)

// SetAttr changes the permission bits and/or the modification time of p.
func (c *Cache) SetAttr(ctx context.Context, p string, mode *uint32, mtime *time.Time) (Attr, error) {
	if p == "" {
		return c.setRoot(mode, nil) // the root's time is not kept
	}
	if err := c.checkPath(p); err != nil {
		return Attr{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var out Attr
	err := c.update(func(t *tx) error {
		r, ok, err := t.get(p)
		if err != nil || !ok {
			return errorOr(err, ErrNotExist)
		}
		if mode != nil {
			r.Mode = *mode & 0o7777
		}
		if mtime != nil {
			r.MTime = mtime.UnixNano()
			if r.Data != "" {
				// The data file's time is what the next flush records.
				if err := os.Chtimes(c.dataPath(r.Data), *mtime, *mtime); err != nil {
					return err
				}
			}
		}
		out = attrOf(r)
		return t.put(p, r)
	})
	if err != nil {
		return Attr{}, wrapPath("setattr", p, err)
	}
	if of := c.open[p]; of != nil {
		of.attr.Mode = out.Mode
	}
	return out, nil
}

// Truncate sets the size of the file at p.
func (c *Cache) Truncate(ctx context.Context, p string, size int64) error {
	flags := os.O_WRONLY
	if size == 0 {
		flags |= os.O_TRUNC // no need to fetch bytes that are thrown away
	}
	h, err := c.OpenFile(ctx, p, flags)
	if err != nil {
		return err
	}
	err = h.Truncate(ctx, size)
	if ferr := h.Flush(ctx); err == nil {
		err = ferr
	}
	h.Release(ctx)
	return err
}
