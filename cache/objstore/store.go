// Package objstore is the object-store contract: the one Store interface the
// cache needs and every store implements (the S3 client in package s3, the
// in-memory Mem and the fault-injecting Faulty here, and the decorators in
// cmd), its result types, and the error every store returns. Package
// storetest checks an implementation against the contract.
//
// Keys are paths relative to the mount; a store adds its own prefix. A
// missing object is an error wrapping io/fs.ErrNotExist and nothing else
// is; an error that retrying cannot cure reports Permanent() true.
package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"time"
)

// Store is an object store.
type Store interface {
	// Put stores the first size bytes of body at key, replacing any
	// object, with meta as its user metadata (x-amz-meta-<name>). A failed
	// or cancelled Put leaves the previous object as it was.
	Put(ctx context.Context, key string, body io.ReaderAt, size int64, meta map[string]string) error
	// Get returns n bytes of the object from offset off (n < 0: to its
	// end), with how many bytes the body holds and what the response said
	// of the whole object.
	Get(ctx context.Context, key string, off, n int64) (Body, error)
	// Head returns the object's size, time and user metadata.
	Head(ctx context.Context, key string) (Object, error)
	// Copy copies the object at from to the key to in the store, without
	// its bytes passing through this host, with meta as the copy's user
	// metadata. from == to replaces the metadata alone.
	Copy(ctx context.Context, from, to string, meta map[string]string) error
	// Lookup tells, in one request as a rule, whether key is an object and
	// whether objects lie below key/ (a directory). It calls below (if not
	// nil) for the objects under key/ that the answer brought, with names
	// relative to key/.
	Lookup(ctx context.Context, key string, below func(Entry)) (Found, error)
	// Delete removes key; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// List calls fn for each object and each common prefix (a directory)
	// directly below prefix, with names relative to prefix, in key order.
	// With recursive, it calls fn for every object below prefix instead
	// (names then hold "/"). It stops early when fn returns false.
	List(ctx context.Context, prefix string, recursive bool, fn func(Entry) bool) error
}

// BatchDeleter is a Store that can also delete many keys in one request
// (S3's DeleteObjects). It is optional: a store without it is sent one
// DELETE a key.
type BatchDeleter interface {
	Store
	// DeleteMany deletes up to MaxDeleteBatch keys in one request. It
	// returns the keys the store did not delete, each with its reason (a
	// key that did not exist counts as deleted); err is for a request
	// that failed as a whole, after which nothing is known deleted.
	DeleteMany(ctx context.Context, keys []string) (failed map[string]error, err error)
}

// BatchDeleterOf is s's DeleteMany, for a wrapper that forwards it: an
// error wrapping errors.ErrUnsupported when s has none, so that callers
// send one DELETE a key instead.
func BatchDeleterOf(s Store) (BatchDeleter, error) {
	if bd, ok := s.(BatchDeleter); ok {
		return bd, nil
	}
	return nil, fmt.Errorf("delete_objects: %w", errors.ErrUnsupported)
}

// MaxDeleteBatch is the most keys one DeleteObjects request may name.
const MaxDeleteBatch = 1000

// Object is what a HEAD (or a GET's headers) says of an object.
type Object struct {
	Size  int64
	MTime time.Time
	Meta  map[string]string // user metadata, without the x-amz-meta- prefix
	// Sum is a checksum of the whole object that the store vouches for:
	// a full-object checksum it keeps (x-amz-checksum-*), or the ETag of
	// an unencrypted single-part object, which is its MD5. Zero when it
	// gave neither.
	Sum Sum
}

// Body is a GET's answer: its bytes, how many the store announced
// (Content-Length), and what the response said of the whole object
// (Size is the whole object's, also for a range).
type Body struct {
	io.ReadCloser
	Len int64
	Object
}

// Entry is one name in a listing.
type Entry struct {
	Name  string
	Size  int64
	MTime time.Time
	Dir   bool // a common prefix, not an object
}

// Found is a Lookup's answer.
type Found struct {
	File  bool // key is an object, of Size bytes written at MTime
	Size  int64
	MTime time.Time
	Dir   bool // objects lie below key/
	// Complete: below was called for every object under key/.
	Complete bool
}

// Error is a failed request, as every store reports it. It unwraps to
// io/fs.ErrNotExist for a missing object.
type Error struct {
	Op     string // "put", "get", "head", "delete", "list", "copy"…
	Key    string
	Code   string // the S3 error code when the store sent one, e.g. "AccessDenied"
	Status int    // HTTP status, 0 when no response arrived
	Err    error
	// Perm: repeating the request unchanged will fail again until someone
	// fixes configuration or policy (AccessDenied, NoSuchBucket…).
	Perm bool
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("s3 %s %q", e.Op, e.Key)
	if e.Code != "" {
		msg += " " + e.Code
	}
	if e.Status != 0 {
		msg += fmt.Sprintf(" (HTTP %d)", e.Status)
	}
	return msg + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Permanent reports that retrying alone cannot cure the error.
func (e *Error) Permanent() bool { return e.Perm }

// IsPermanent reports whether err is a store error that retrying alone
// cannot fix.
func IsPermanent(err error) bool {
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent()
}

// IsNotExist reports a missing object.
func IsNotExist(err error) bool { return errors.Is(err, iofs.ErrNotExist) }

// NotFound is the error for a missing object.
func NotFound(op, key string) error {
	return &Error{Op: op, Key: key, Status: 404, Code: "NoSuchKey", Err: iofs.ErrNotExist}
}
