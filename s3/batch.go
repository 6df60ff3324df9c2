package s3

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// MaxDeleteBatch is the most keys one DeleteObjects request takes.
const MaxDeleteBatch = objstore.MaxDeleteBatch

// DeleteMany implements objstore.BatchDeleter with one DeleteObjects
// request; S3 reports a key that did not exist as deleted.
func (c *Client) DeleteMany(ctx context.Context, keys []string) (failed map[string]error, err error) {
	if len(keys) == 0 {
		return nil, nil
	}
	if len(keys) > MaxDeleteBatch {
		return nil, fmt.Errorf("delete %d keys: at most %d a request", len(keys), MaxDeleteBatch)
	}
	ids := make([]types.ObjectIdentifier, len(keys))
	byFull := make(map[string]string, len(keys))
	for i, k := range keys {
		ids[i] = types.ObjectIdentifier{Key: aws.String(c.key(k))}
		byFull[c.key(k)] = k
	}
	out, err := c.api.DeleteObjects(ctx, &s3.DeleteObjectsInput{
		Bucket: &c.bucket,
		Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)},
	})
	if err != nil {
		return nil, notImplemented(classify("delete_objects", keys[0], err))
	}
	for _, e := range out.Errors {
		k, ok := byFull[aws.ToString(e.Key)]
		if !ok {
			continue
		}
		code := aws.ToString(e.Code)
		err := &Error{Op: "delete_objects", Key: k, Code: code, Perm: permanentCodes[code] || code == "AccessDenied",
			Err: fmt.Errorf("%s", aws.ToString(e.Message))}
		if code == "NoSuchKey" || deleted(k, err) {
			continue
		}
		if failed == nil {
			failed = map[string]error{}
		}
		failed[k] = err
	}
	return failed, nil
}

// notImplemented marks the answer of a store that has no DeleteObjects
// (501 Not Implemented, 405 Method Not Allowed) as errors.ErrUnsupported,
// so that the caller deletes one key a request from then on.
func notImplemented(err error) error {
	var e *Error
	if errors.As(err, &e) && (e.Status == http.StatusNotImplemented || e.Status == http.StatusMethodNotAllowed || e.Code == "NotImplemented") {
		e.Err = fmt.Errorf("%w: %w", errors.ErrUnsupported, e.Err)
	}
	return err
}
