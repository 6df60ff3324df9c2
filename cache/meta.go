package cache

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/index"
)

// A file's owner, mode and modification time travel with its object as
// user metadata, under the names s3fs and rclone use, so that another
// host, this host after losing its cache, and those tools all see the
// same values:
//
//	x-amz-meta-uid    decimal user ID
//	x-amz-meta-gid    decimal group ID
//	x-amz-meta-mode   decimal st_mode, file type bits included (s3fs)
//	x-amz-meta-mtime  seconds since the epoch, "sec" or "sec.nnnnnnnnn"
//
// Only what was set is sent: an object without a uid shows the mount's
// uid on every host, as one from the old provider does. Directories have
// no object, so their owner and mode stay in this host's index.
//
// Every upload also carries the CRC-32C of its bytes, which any host that
// fetches the object checks before it keeps a byte (verify.go):
//
//	x-amz-meta-s3mediafs-crc32c  8 lowercase hex digits
const (
	metaUID    = "uid"
	metaGID    = "gid"
	metaMode   = "mode"
	metaMTime  = "mtime"
	metaCRC32C = "s3mediafs-crc32c"
)

// metaOf is the user metadata an upload of r carries.
func metaOf(r index.Record) map[string]string {
	m := map[string]string{metaMTime: formatMetaTime(r.MTime)}
	if r.OwnerSet {
		m[metaUID] = strconv.FormatUint(uint64(r.UID), 10)
		m[metaGID] = strconv.FormatUint(uint64(r.GID), 10)
	}
	if r.ModeSet || r.Kind != 0 {
		kind := uint32(syscall.S_IFREG)
		if r.Kind != 0 {
			kind = r.Kind
		}
		m[metaMode] = strconv.FormatUint(uint64(kind|r.Mode), 10)
	}
	if r.HasCRC {
		m[metaCRC32C] = fmt.Sprintf("%08x", r.CRC32C)
	}
	return m
}

// crcOfMeta reads the CRC-32C an upload from a mount put in meta.
func crcOfMeta(meta map[string]string) (uint32, bool) {
	v := meta[metaCRC32C]
	if len(v) != 8 {
		return 0, false
	}
	n, err := strconv.ParseUint(v, 16, 32)
	return uint32(n), err == nil
}

// ObjectMeta is the user metadata of an object for a regular file with
// this owner, permission bits and modification time, as an upload from
// the mount would carry (import uses it for the files it copies).
func ObjectMeta(uid, gid, mode uint32, mtime time.Time) map[string]string {
	return metaOf(index.Record{OwnerSet: true, UID: uid, GID: gid, Mode: mode & 0o7777, ModeSet: true, MTime: mtime.UnixNano()})
}

func formatMetaTime(ns int64) string {
	t := time.Unix(0, ns)
	if t.Nanosecond() == 0 {
		return strconv.FormatInt(t.Unix(), 10)
	}
	return strconv.FormatInt(t.Unix(), 10) + "." + strconv.Itoa(1e9 + t.Nanosecond())[1:]
}

// parseMetaTime reads "sec" or "sec.fraction" (rclone writes up to nine
// fraction digits); ok is false for anything else.
func parseMetaTime(s string) (ns int64, ok bool) {
	secs, frac, _ := strings.Cut(s, ".")
	sec, err := strconv.ParseInt(secs, 10, 64)
	if err != nil || sec < -1<<33 || sec > 1<<33 || len(frac) > 9 {
		return 0, false
	}
	var nsec int64
	if frac != "" {
		f, err := strconv.ParseUint(frac+strings.Repeat("0", 9-len(frac)), 10, 64)
		if err != nil {
			return 0, false
		}
		nsec = int64(f)
	}
	return sec*1e9 + nsec, true
}

// parseMetaMode reads s3fs's decimal st_mode, or rclone's octal one
// (which starts with 0).
func parseMetaMode(s string) (uint32, bool) {
	base := 10
	if len(s) > 1 && s[0] == '0' {
		base = 8
	}
	v, err := strconv.ParseUint(s, base, 32)
	return uint32(v), err == nil
}

// applyMeta sets on r what the object's metadata says. A value that does
// not parse, or names a file type an object cannot hold, is ignored: the
// bucket may have been written by anyone.
func applyMeta(r *index.Record, meta map[string]string) {
	r.MetaUnknown = false
	uid, uerr := strconv.ParseUint(meta[metaUID], 10, 32)
	gid, gerr := strconv.ParseUint(meta[metaGID], 10, 32)
	if uerr == nil && gerr == nil {
		r.OwnerSet, r.UID, r.GID = true, uint32(uid), uint32(gid)
	}
	if mode, ok := parseMetaMode(meta[metaMode]); ok {
		switch mode & syscall.S_IFMT {
		case syscall.S_IFLNK:
			r.Kind = syscall.S_IFLNK
			fallthrough
		case 0, syscall.S_IFREG:
			r.Mode, r.ModeSet = mode&0o7777, true
		}
	}
	if ns, ok := parseMetaTime(meta[metaMTime]); ok {
		r.MTime = ns
	}
	if crc, ok := crcOfMeta(meta); ok && !r.HasCRC {
		r.CRC32C, r.HasCRC = crc, true
	}
}

// learnMeta reads the metadata of the object at p, which p's record was
// learned without (from a LIST), and records it. Until the store answers,
// the mount's defaults show: a failed HEAD is retried at the next lookup.
//
// A file whose open follows as a rule (a thumbnail, a photo) is fetched
// instead, and its GET's response carries the metadata: the lookup
// answers once the response has brought it, while the body is still on
// its way, and a cold read costs one request, not a HEAD beside the GET,
// and the store's latency once.
func (c *Cache) learnMeta(ctx context.Context, p string, r index.Record) Attr {
	if c.storeIsDown() {
		return attrOf(r)
	}
	if a, ok := c.awaitAhead(ctx, p, r.Ino); ok {
		return a
	}
	if c.worthFetchingWithMeta(p, r) {
		d := c.startFetch(p)
		wait, cancel := context.WithTimeout(ctx, c.opts.LookupTimeout)
		select {
		case <-d.metaKnown:
		case <-wait.Done():
		}
		cancel()
		if cur, ok, err := c.readRecord(p); err == nil && ok && cur.Ino == r.Ino && !cur.MetaUnknown {
			return c.withOpenSize(p, attrOf(cur))
		}
	}
	return c.headMeta(ctx, p, r)
}

// headMeta reads the metadata of the object at p with one HEAD, shared by
// every caller asking meanwhile, and records it (see learnMeta).
func (c *Cache) headMeta(ctx context.Context, p string, r index.Record) Attr {
	v, _, _ := c.metaLookups.Do(p, func() (any, error) {
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.LookupTimeout)
		defer cancel()
		o, err := c.store.Head(hctx, p)
		meta := o.Meta
		if err != nil {
			if !isNotFound(err) {
				c.noteStoreError(err)
			}
			return attrOf(r), nil
		}
		return c.recordObjectMeta(p, r, meta), nil
	})
	return v.(Attr)
}

// recordObjectMeta records the metadata of p's object (a HEAD's or a
// GET's), unless p is another file now or has it already, and returns
// p's attributes.
func (c *Cache) recordObjectMeta(p string, r index.Record, meta map[string]string) Attr {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := attrOf(r)
	err := c.updateLocked(func(t *index.Tx) error {
		cur, ok, err := t.Get(p)
		if err != nil || !ok || !cur.MetaUnknown || cur.Ino != r.Ino || c.opts.SkipObjectMeta {
			if ok {
				out = attrOf(cur)
			}
			return err
		}
		applyMeta(&cur, meta)
		out = attrOf(cur)
		return t.Put(p, cur)
	})
	if err != nil {
		c.log.Warn("recording an object's metadata failed", "path", p, "err", err)
	}
	return out
}

// readdirQuiet is how long after a listing of a directory its names'
// lookups are taken for a listing's (ls -l, find, a backup) rather than a
// reader's, and fetch nothing ahead.
const readdirQuiet = time.Minute

// worthFetchingWithMeta reports whether the lookup of p, a file known from
// a LIST, should start fetching its bytes: a store-only file up to
// FetchAheadMax that one GET fetches, whose directory was not just listed.
func (c *Cache) worthFetchingWithMeta(p string, r index.Record) bool {
	if r.Dir || r.State != Remote || r.Size > c.opts.FetchAheadMax || r.Size >= rangedFetchMin || r.Kind != 0 {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	at, listed := c.readdirs.get(index.ParentOf(p))
	return !listed || time.Since(at) > readdirQuiet
}
