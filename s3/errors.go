package s3

import (
	"github.com/s3mediafs/s3mediafs/cache/objstore"

	"errors"
	"fmt"
	iofs "io/fs"
	"net/http"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// Error is the contract's error: every request of a Client that fails
// returns one.
type Error = objstore.Error

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
		e.Code, e.Perm = "NoSuchBucket", true
		e.Err = fmt.Errorf("the bucket does not exist: %w", err)
		return e
	}
	switch {
	case errors.As(err, &nsk), errors.As(err, &nf), e.Code == "NoSuchKey", e.Code == "NoSuchUpload",
		e.Status == http.StatusNotFound && e.Code != "NoSuchBucket" && op != "head-bucket":
		e.Err = fmt.Errorf("%w: %v", iofs.ErrNotExist, err)
	case transientCodes[e.Code]:
	case permanentCodes[e.Code]:
		e.Perm = true
	case e.Status == http.StatusForbidden, e.Status == http.StatusBadRequest, e.Status == http.StatusNotImplemented:
		e.Perm = true
	}
	return e
}
