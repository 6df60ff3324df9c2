package s3

import (
	"context"

	"errors"
	"fmt"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"io"
	iofs "io/fs"
	"net/http"
	"time"
)

// Store is the object-store contract. It mirrors cache.Store method for
// method and uses only standard-library types, so this package never imports
// the cache and any Store here satisfies the cache's interface.
type Store interface {
	// Put stores the first size bytes of body at key, replacing any
	// object, with meta as the object's user metadata (x-amz-meta-<name>).
	Put(ctx context.Context, key string, body io.ReaderAt, size int64, meta map[string]string) error
	// Get returns n bytes of the object from offset off (n < 0: to its
	// end), and how many bytes the body holds.
	Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, int64, error)
	// Head returns the object's size, modification time and user metadata.
	Head(ctx context.Context, key string) (size int64, mtime time.Time, meta map[string]string, err error)
	// Copy copies the object at from to the key to in the store, without
	// sending its bytes through this host, with meta as the copy's user
	// metadata. from == to replaces the object's metadata alone.
	Copy(ctx context.Context, from, to string, meta map[string]string) error
	// Lookup tells, in one request as a rule, whether key is an object
	// (with its size and time) and whether objects lie below key/ (a
	// directory). It calls below (if not nil) for the objects under key/
	// that the answer brought, with names relative to key/; complete
	// reports that those were all of them.
	Lookup(ctx context.Context, key string, below func(name string, size int64, mtime time.Time)) (size int64, mtime time.Time, file, dir, complete bool, err error)
	// Delete removes key; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// List calls fn for each object and each common prefix ("directory")
	// directly below prefix, with names relative to prefix, in key order.
	// With recursive, it calls fn for every object below prefix instead
	// (names then contain "/"). It stops early when fn returns false.
	List(ctx context.Context, prefix string, recursive bool, fn func(name string, size int64, mtime time.Time, isDir bool) bool) error
	// AbortMultipart discards an unfinished multipart upload.
	AbortMultipart(ctx context.Context, key, uploadID string) error
	// AbortStaleMultipart discards the unfinished multipart uploads of key
	// started before the given time.
	AbortStaleMultipart(ctx context.Context, key string, before time.Time) error
}

// Error is what every Store in this package returns for a failed request.
// It unwraps to fs.ErrNotExist for a missing object, and reports whether
// retrying can help.
type Error struct {
	Op     string // "put", "get", "head", "delete", "list"
	Key    string
	Code   string // S3 error code when the store sent one, e.g. "AccessDenied"
	Status int    // HTTP status, 0 when no response arrived
	Err    error
	perm   bool
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

// Permanent reports that repeating the request unchanged will fail again
// until someone fixes configuration or policy (AccessDenied, NoSuchBucket…).
func (e *Error) Permanent() bool { return e.perm }

// permanentCodes are S3 error codes that retrying cannot cure by itself.
var permanentCodes = map[string]bool{
	"AccessDenied":              true,
	"AllAccessDisabled":         true,
	"NoSuchBucket":              true,
	"InvalidAccessKeyId":        true,
	"SignatureDoesNotMatch":     true,
	"InvalidBucketName":         true,
	"AccountProblem":            true,
	"InvalidRequest":            true,
	"InvalidStorageClass":       true,
	"InvalidArgument":           true,
	"KMS.AccessDeniedException": true,
}

// isNotFoundErr reports a missing object or upload.
func isNotFoundErr(err error) bool { return errors.Is(err, iofs.ErrNotExist) }

// IsPermanent reports whether err is a store error that retrying alone
// cannot fix.
func IsPermanent(err error) bool {
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent()
}

// transientCodes are 4xx answers that a retry can cure: the body was
// damaged or changed on the way, or the store timed out reading it.
var transientCodes = map[string]bool{
	"BadDigest":                 true,
	"InvalidDigest":             true,
	"XAmzContentSHA256Mismatch": true,
	"RequestTimeout":            true,
	"IncompleteBody":            true,
	"RequestTimeTooSkewed":      true,
	"SlowDown":                  true,
}

// classify wraps an SDK error into *Error, deciding not-found and permanence.
func classify(op, key string, err error) error {
	if err == nil {
		return nil
	}
	e := &Error{Op: op, Key: key, Err: err}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		e.Status = re.HTTPStatusCode()
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		e.Code = api.ErrorCode()
	}
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	if op == "head-bucket" && e.Status == http.StatusNotFound {
		e.Code, e.perm = "NoSuchBucket", true
		e.Err = fmt.Errorf("the bucket does not exist: %w", err)
		return e
	}
	switch {
	case errors.As(err, &nsk), errors.As(err, &nf), e.Code == "NoSuchKey", e.Code == "NoSuchUpload",
		e.Status == http.StatusNotFound && e.Code != "NoSuchBucket" && op != "head-bucket":
		e.Err = fmt.Errorf("%w: %v", iofs.ErrNotExist, err)
	case transientCodes[e.Code]:
	case permanentCodes[e.Code]:
		e.perm = true
	case e.Status == http.StatusForbidden, e.Status == http.StatusBadRequest, e.Status == http.StatusNotImplemented:
		e.perm = true
	}
	return e
}
