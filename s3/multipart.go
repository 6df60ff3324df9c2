package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"
)

// putMultipart uploads body in parts. The upload ID is journaled between
// its creation and its completion or abort, so a crash cannot orphan it.
func (c *Client) putMultipart(ctx context.Context, key string, body io.ReaderAt, size int64, meta map[string]string) error {
	partSize := c.cfg.MultipartPartSize
	for (size+partSize-1)/partSize > maxParts {
		partSize *= 2
	}
	// With checksums on, every part carries a CRC32 that the completion
	// repeats, so the store verifies each part and the whole.
	var algo types.ChecksumAlgorithm
	if !c.cfg.ChecksumWhenRequired {
		algo = types.ChecksumAlgorithmCrc32
	}
	// The intent is journaled before the upload exists: a crash, or an
	// answer lost on the way, between its creation and the journaling of
	// its ID would otherwise orphan it. The next start aborts what such
	// an intent left behind.
	journal := c.journal
	if journal != nil {
		if err := journal.BeginMultipart(key, ""); err != nil {
			return fmt.Errorf("journal multipart upload of %q: %w", key, err)
		}
	}
	created, err := c.api.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		ChecksumAlgorithm:    algo,
		Bucket:               &c.bucket,
		Key:                  aws.String(c.key(key)),
		Metadata:             meta,
		StorageClass:         c.storageClass(key),
		SSECustomerAlgorithm: c.sseAlgorithm(),
		SSECustomerKey:       c.sseKey,
		SSECustomerKeyMD5:    c.sseKeyMD5,
		ServerSideEncryption: types.ServerSideEncryption(c.cfg.ServerSideEncryption),
		SSEKMSKeyId:          optional(c.cfg.SSEKMSKeyID),
	}, func(o *s3.Options) {
		// Not retried here: a retry after a lost answer creates a second
		// upload and orphans the first. The upload queue retries instead.
		o.RetryMaxAttempts = 1
	})
	if err != nil {
		return classify("create-multipart", key, err) // the intent stays for the next start
	}
	id := aws.ToString(created.UploadId)
	if journal != nil {
		if err := journal.BeginMultipart(key, id); err != nil {
			c.abort(key, id)
			return fmt.Errorf("journal multipart upload of %q: %w", key, err)
		}
		journal.EndMultipart(key, "")
	}
	err = c.uploadParts(ctx, key, id, body, size, partSize, algo)
	if err != nil {
		c.abort(key, id)
	}
	if journal != nil {
		if jerr := journal.EndMultipart(key, id); jerr != nil && err == nil {
			c.log.Warn("could not clear a finished multipart upload from the journal", "key", key, "err", jerr)
		}
	}
	return err
}

func (c *Client) uploadParts(ctx context.Context, key, id string, body io.ReaderAt, size, partSize int64, algo types.ChecksumAlgorithm) error {
	n := int((size + partSize - 1) / partSize)
	parts := make([]types.CompletedPart, n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.cfg.MultipartConcurrency)
	for i := range n {
		off := int64(i) * partSize
		length := min(partSize, size-off)
		g.Go(func() error {
			in := &s3.UploadPartInput{
				Bucket:               &c.bucket,
				Key:                  aws.String(c.key(key)),
				UploadId:             aws.String(id),
				PartNumber:           aws.Int32(int32(i + 1)),
				ChecksumAlgorithm:    algo,
				Body:                 io.NewSectionReader(body, off, length),
				ContentLength:        aws.Int64(length),
				SSECustomerAlgorithm: c.sseAlgorithm(),
				SSECustomerKey:       c.sseKey,
				SSECustomerKeyMD5:    c.sseKeyMD5,
			}
			if c.cfg.ChecksumWhenRequired {
				sum, err := contentMD5(body, off, length)
				if err != nil {
					return &Error{Op: "upload-part", Key: key, Err: err}
				}
				in.ContentMD5 = sum
			}
			out, err := c.api.UploadPart(gctx, in)
			if err != nil {
				return classify("upload-part", key, err)
			}
			parts[i] = types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(int32(i + 1))}
			if algo != "" {
				parts[i].ChecksumCRC32 = out.ChecksumCRC32
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	_, err := c.api.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket:               &c.bucket,
		Key:                  aws.String(c.key(key)),
		UploadId:             aws.String(id),
		MultipartUpload:      &types.CompletedMultipartUpload{Parts: parts},
		SSECustomerAlgorithm: c.sseAlgorithm(),
		SSECustomerKey:       c.sseKey,
		SSECustomerKeyMD5:    c.sseKeyMD5,
	})
	return classify("complete-multipart", key, err)
}

// abort gives up an upload on its own deadline: the caller's context may
// be the reason it failed.
func (c *Client) abort(key, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.AbortMultipart(ctx, key, id); err != nil {
		c.log.Warn("could not abort a multipart upload; the index keeps it for the next start", "key", key, "err", err)
	}
}

// AbortLeftoverMultiparts aborts the multipart uploads the journal held
// when New read it: ones a crash cut off, whose parts would otherwise
// linger (and cost) in the bucket. An intent is settled by aborting the
// key's uploads begun before then. Failures stay journaled for the next
// start.
func (c *Client) AbortLeftoverMultiparts(ctx context.Context) {
	c.mu.Lock()
	left := c.leftovers
	c.leftovers = nil
	c.mu.Unlock()
	for _, u := range left {
		var err error
		if u.id == "" {
			err = c.AbortStaleMultipart(ctx, u.key, c.opened)
		} else {
			err = c.AbortMultipart(ctx, u.key, u.id)
		}
		if err != nil {
			c.log.Warn("could not abort a multipart upload left by a crash; will try at the next start", "key", u.key, "err", err)
			continue
		}
		if err := c.journal.EndMultipart(u.key, u.id); err != nil {
			c.log.Warn("multipart journal update failed", "key", u.key, "err", err)
		}
		c.log.Debug("cleared a multipart upload left by a crash", "key", u.key, "upload_id", u.id)
	}
}

// AbortMultipart discards an unfinished multipart
// upload. An upload that is already gone is not an error.
func (c *Client) AbortMultipart(ctx context.Context, key, uploadID string) error {
	_, err := c.api.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
		Bucket: &c.bucket, Key: aws.String(c.key(key)), UploadId: aws.String(uploadID),
	})
	var nsu *types.NoSuchUpload
	if errors.As(err, &nsu) {
		return nil
	}
	err = classify("abort-multipart", key, err)
	if isNotFoundErr(err) {
		return nil
	}
	return err
}

// AbortStaleMultipart aborts the unfinished multipart
// uploads of key that were started before the given time.
func (c *Client) AbortStaleMultipart(ctx context.Context, key string, before time.Time) error {
	full := c.key(key)
	in := &s3.ListMultipartUploadsInput{Bucket: &c.bucket, Prefix: aws.String(full)}
	for {
		page, err := c.api.ListMultipartUploads(ctx, in)
		if err != nil {
			return classify("list-multipart", key, err)
		}
		for _, u := range page.Uploads {
			if aws.ToString(u.Key) == full && aws.ToTime(u.Initiated).Before(before) {
				if err := c.AbortMultipart(ctx, key, aws.ToString(u.UploadId)); err != nil {
					return err
				}
			}
		}
		if !aws.ToBool(page.IsTruncated) {
			return nil
		}
		in.KeyMarker, in.UploadIdMarker = page.NextKeyMarker, page.NextUploadIdMarker
	}
}

// MultipartUploads lists the unfinished multipart uploads under the
// client's prefix, as key (relative to the prefix) and upload ID.
func (c *Client) MultipartUploads(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	in := &s3.ListMultipartUploadsInput{Bucket: &c.bucket, Prefix: aws.String(c.prefix)}
	for {
		page, err := c.api.ListMultipartUploads(ctx, in)
		if err != nil {
			return nil, classify("list-multipart", c.prefix, err)
		}
		for _, u := range page.Uploads {
			out[aws.ToString(u.Key)[len(c.prefix):]] = aws.ToString(u.UploadId)
		}
		if !aws.ToBool(page.IsTruncated) {
			return out, nil
		}
		in.KeyMarker, in.UploadIdMarker = page.NextKeyMarker, page.NextUploadIdMarker
	}
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return aws.String(s)
}
