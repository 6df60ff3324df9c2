package cache

import (
	"context"
	"errors"
	"io"
	iofs "io/fs"
	"time"
)

// Store is what the cache needs from an object store. Keys are paths
// relative to the mount; the store adds its own prefix. Errors for a missing
// object wrap io/fs.ErrNotExist; errors that retrying cannot cure implement
// Permanent() bool returning true.
type Store interface {
	// Put and Head carry the object's user metadata (see meta.go).
	Put(ctx context.Context, key string, body io.ReaderAt, size int64, meta map[string]string) error
	Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, int64, error)
	Head(ctx context.Context, key string) (size int64, mtime time.Time, meta map[string]string, err error)
	// Copy copies the object at from to the key to, server-side, with meta
	// as its user metadata; from == to replaces the metadata alone.
	Copy(ctx context.Context, from, to string, meta map[string]string) error
	// Lookup tells, in one request as a rule, whether key is an object and
	// whether objects lie below key/, and hands below the objects under
	// key/ that came with the answer; complete says they were all.
	Lookup(ctx context.Context, key string, below func(name string, size int64, mtime time.Time)) (size int64, mtime time.Time, file, dir, complete bool, err error)
	Delete(ctx context.Context, key string) error
	List(ctx context.Context, prefix string, recursive bool, fn func(name string, size int64, mtime time.Time, isDir bool) bool) error
	AbortMultipart(ctx context.Context, key, uploadID string) error
	AbortStaleMultipart(ctx context.Context, key string, before time.Time) error
}

// Errors the cache returns; the fs package maps them to errno values.
var (
	ErrNotExist    = iofs.ErrNotExist
	ErrExist       = iofs.ErrExist
	ErrNotEmpty    = errors.New("directory not empty")
	ErrIsDir       = errors.New("is a directory")
	ErrNotDir      = errors.New("not a directory")
	ErrNameTooLong = errors.New("name too long for an object key")
	ErrInvalid     = errors.New("invalid argument")
	// ErrNotUTF8: object keys are UTF-8 (AWS says so; SeaweedFS refuses
	// other bytes), so a name that is not cannot be stored.
	ErrNotUTF8     = errors.New("name is not UTF-8, as object keys must be")
	ErrCrossDevice = errors.New("cannot move between a local-only tree and the store")
	ErrStore       = errors.New("object store unavailable")
	ErrClosed      = errors.New("cache is closed")
)

func isNotFound(err error) bool { return errors.Is(err, iofs.ErrNotExist) }

func isPermanent(err error) bool {
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent()
}
