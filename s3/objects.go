package s3

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/s3mediafs/s3mediafs/cache/objstore"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// contentMD5 returns the base64 MD5 of size bytes of body from off.
func contentMD5(body io.ReaderAt, off, size int64) (*string, error) {
	h := md5.New()
	if _, err := io.Copy(h, io.NewSectionReader(body, off, size)); err != nil {
		return nil, err
	}
	return aws.String(base64.StdEncoding.EncodeToString(h.Sum(nil))), nil
}

// Put implements Store. The body's length is sent as Content-Length, which
// AWS and several compatible stores require; large bodies go up in parts.
func (c *Client) Put(ctx context.Context, key string, body io.ReaderAt, size int64, meta map[string]string) error {
	if size >= c.cfg.MultipartThreshold {
		return c.putMultipart(ctx, key, body, size, meta)
	}
	in := &s3.PutObjectInput{
		Bucket:               &c.bucket,
		Key:                  aws.String(c.key(key)),
		Body:                 io.NewSectionReader(body, 0, size),
		ContentLength:        aws.Int64(size),
		Metadata:             meta,
		StorageClass:         c.storageClass(key),
		SSECustomerAlgorithm: c.sseAlgorithm(),
		SSECustomerKey:       c.sseKey,
		SSECustomerKeyMD5:    c.sseKeyMD5,
		ServerSideEncryption: types.ServerSideEncryption(c.cfg.ServerSideEncryption),
	}
	if c.cfg.SSEKMSKeyID != "" {
		in.SSEKMSKeyId = aws.String(c.cfg.SSEKMSKeyID)
	}
	if c.cfg.ChecksumWhenRequired {
		// Without the SDK's CRC the store checks this instead.
		md5sum, err := contentMD5(body, 0, size)
		if err != nil {
			return &Error{Op: "put", Key: key, Err: err}
		}
		in.ContentMD5 = md5sum
	}
	_, err := c.api.PutObject(ctx, in)
	return classify("put", key, err)
}

// Get implements Store.
func (c *Client) Get(ctx context.Context, key string, off, n int64) (objstore.Body, error) {
	in := &s3.GetObjectInput{
		Bucket:               &c.bucket,
		Key:                  aws.String(c.key(key)),
		SSECustomerAlgorithm: c.sseAlgorithm(),
		SSECustomerKey:       c.sseKey,
		SSECustomerKeyMD5:    c.sseKeyMD5,
	}
	empty := objstore.Body{ReadCloser: io.NopCloser(strings.NewReader("")), Object: objstore.Object{Size: -1}}
	switch {
	case n == 0:
		return empty, nil
	case n > 0:
		in.Range = aws.String(fmt.Sprintf("bytes=%d-%d", off, off+n-1))
	case off > 0:
		in.Range = aws.String(fmt.Sprintf("bytes=%d-", off))
	}
	var opts []func(*s3.Options)
	if in.Range != nil {
		// A checksum a store sends with a range is the whole object's
		// (gofakes3 does so), which the range's bytes can never match.
		// The body's length is still checked against Content-Length.
		opts = append(opts, func(o *s3.Options) {
			o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		})
	}
	out, err := c.api.GetObject(ctx, in, opts...)
	if err != nil {
		var re *awshttp.ResponseError
		if off > 0 && errors.As(err, &re) && re.HTTPStatusCode() == http.StatusRequestedRangeNotSatisfiable {
			return empty, nil
		}
		return objstore.Body{}, classify("get", key, err)
	}
	n = aws.ToInt64(out.ContentLength)
	size := n
	if in.Range != nil {
		size = rangeTotal(aws.ToString(out.ContentRange))
	}
	sums := checksums{out.ChecksumCRC32C, out.ChecksumCRC32, out.ChecksumSHA256, out.ChecksumSHA1}
	return objstore.Body{ReadCloser: out.Body, Len: n, Object: objstore.Object{
		Size: size, MTime: aws.ToTime(out.LastModified), Meta: out.Metadata,
		Sum: c.vouched(sums, out.ETag, out.SSECustomerAlgorithm, out.ServerSideEncryption),
	}}, nil
}

// rangeTotal reads the whole object's size from a Content-Range
// ("bytes 0-99/1234"); -1 when it does not say.
func rangeTotal(cr string) int64 {
	_, total, ok := strings.Cut(cr, "/")
	if !ok {
		return -1
	}
	v, err := strconv.ParseInt(total, 10, 64)
	if err != nil || v < 0 {
		return -1
	}
	return v
}

// checksums are the full-object checksum headers of a response, in the
// order the cache prefers them.
type checksums struct{ crc32c, crc32, sha256, sha1 *string }

// sum is the checksum of the whole object that a response vouches for:
// a full-object checksum header, else an ETag that is the object's MD5
// (not so for an encrypted object, whose ETag is not its plaintext's).
func (h checksums) sum(etag *string, encrypted bool) objstore.Sum {
	for _, c := range []struct {
		algo objstore.SumAlgo
		v    *string
	}{{objstore.CRC32C, h.crc32c}, {objstore.CRC32, h.crc32}, {objstore.SHA256, h.sha256}, {objstore.SHA1, h.sha1}} {
		if s := objstore.SumFromHeader(c.algo, aws.ToString(c.v)); !s.IsZero() {
			return s
		}
	}
	if encrypted {
		return objstore.Sum{}
	}
	return objstore.SumFromETag(aws.ToString(etag))
}

// Head implements Store.
func (c *Client) Head(ctx context.Context, key string) (objstore.Object, error) {
	in := &s3.HeadObjectInput{
		Bucket:               &c.bucket,
		Key:                  aws.String(c.key(key)),
		SSECustomerAlgorithm: c.sseAlgorithm(),
		SSECustomerKey:       c.sseKey,
		SSECustomerKeyMD5:    c.sseKeyMD5,
	}
	if !c.cfg.ResponseChecksumWhenRequired {
		in.ChecksumMode = types.ChecksumModeEnabled
	}
	out, err := c.api.HeadObject(ctx, in)
	if err != nil {
		return objstore.Object{}, classify("head", key, err)
	}
	sums := checksums{out.ChecksumCRC32C, out.ChecksumCRC32, out.ChecksumSHA256, out.ChecksumSHA1}
	return objstore.Object{Size: aws.ToInt64(out.ContentLength), MTime: aws.ToTime(out.LastModified), Meta: out.Metadata,
		Sum: c.vouched(sums, out.ETag, out.SSECustomerAlgorithm, out.ServerSideEncryption)}, nil
}

// vouched is the Sum an answer with these headers vouches for. An
// encrypted object's ETag (SSE-C, SSE-KMS) is not its plaintext's MD5, and
// no ETag counts where the configuration says the store's are not MD5s.
func (c *Client) vouched(sums checksums, etag, sseC *string, sse types.ServerSideEncryption) objstore.Sum {
	if c.cfg.ETagNotMD5 {
		etag = nil
	}
	return sums.sum(etag, sseC != nil || strings.HasPrefix(string(sse), "aws:kms"))
}

// Copy implements Store with one CopyObject that replaces the metadata;
// the bytes stay in the store. The storage class and encryption are
// restated, as a copy does not keep them. (One CopyObject copies at most
// 5 GiB.)
func (c *Client) Copy(ctx context.Context, from, to string, meta map[string]string) error {
	in := &s3.CopyObjectInput{
		Bucket:                         &c.bucket,
		Key:                            aws.String(c.key(to)),
		CopySource:                     aws.String(url.PathEscape(c.bucket) + "/" + escapeKey(c.key(from))),
		Metadata:                       meta,
		MetadataDirective:              types.MetadataDirectiveReplace,
		StorageClass:                   c.storageClass(to),
		SSECustomerAlgorithm:           c.sseAlgorithm(),
		SSECustomerKey:                 c.sseKey,
		SSECustomerKeyMD5:              c.sseKeyMD5,
		CopySourceSSECustomerAlgorithm: c.sseAlgorithm(),
		CopySourceSSECustomerKey:       c.sseKey,
		CopySourceSSECustomerKeyMD5:    c.sseKeyMD5,
		ServerSideEncryption:           types.ServerSideEncryption(c.cfg.ServerSideEncryption),
		SSEKMSKeyId:                    optional(c.cfg.SSEKMSKeyID),
	}
	_, err := c.api.CopyObject(ctx, in)
	return classify("copy", from, err)
}

// escapeKey escapes each segment of an object key for x-amz-copy-source,
// keeping the slashes between them. Everything but unreserved characters
// is escaped: some stores decode the header as a query ("+" as a space,
// gofakes3 does), and "%2B" means "+" to every decoder.
func escapeKey(key string) string {
	parts := strings.Split(key, "/")
	for i, p := range parts {
		parts[i] = strings.ReplaceAll(url.QueryEscape(p), "+", "%20")
	}
	return strings.Join(parts, "/")
}

// Delete implements Store. A folder key ("dir/") that still holds objects
// is not the caller's to remove: versitygw refuses its DELETE, which is
// taken as done, as SeaweedFS and AWS answer it.
func (c *Client) Delete(ctx context.Context, key string) error {
	_, err := c.api.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &c.bucket, Key: aws.String(c.key(key))})
	if err = classify("delete", key, err); deleted(key, err) {
		return nil
	}
	return err
}

// deleted reports whether a delete of key that ended in err left the key
// gone as the caller means it: it was not there, or it is a folder key
// whose folder still holds objects (see Delete). Single and batched
// deletes answer alike through it.
func deleted(key string, err error) bool {
	var se *Error
	return err == nil || errors.Is(err, iofs.ErrNotExist) ||
		strings.HasSuffix(key, "/") && errors.As(err, &se) && strings.Contains(se.Code, "NotEmpty")
}

// Lookup answers in one request whether key is an object (with its size
// and time) and whether objects lie below key/ (a directory), and hands
// below the objects under key/ that came back with the answer (names
// relative to key/); complete reports that below saw all of them. It is
// one LIST with key as the prefix and no delimiter: the object key sorts
// first, then names that continue key with a character below "/", then
// everything under key/. Only when a page of such longer names comes
// first does it ask again, with a HEAD and a one-key LIST.
func (c *Client) Lookup(ctx context.Context, key string, below func(objstore.Entry)) (objstore.Found, error) {
	full := c.key(key)
	page, err := c.api.ListObjectsV2(ctx, &s3.ListObjectsV2Input{
		Bucket: &c.bucket, Prefix: aws.String(full), MaxKeys: aws.Int32(lookupPage), EncodingType: types.EncodingTypeUrl,
	})
	if err != nil {
		return objstore.Found{}, classify("lookup", key, err)
	}
	var f objstore.Found
	pastDir := false // a name sorting after every key under key/ was seen
	for _, o := range page.Contents {
		rel, ok := relativeKey(o.Key, full, page.EncodingType)
		if !ok {
			continue
		}
		switch {
		case rel == "":
			f.File, f.Size, f.MTime = true, aws.ToInt64(o.Size), aws.ToTime(o.LastModified)
		case rel[0] == '/':
			f.Dir = true
			if name := rel[1:]; below != nil && name != "" && !strings.HasSuffix(name, "/") {
				below(objstore.Entry{Name: name, Size: aws.ToInt64(o.Size), MTime: aws.ToTime(o.LastModified)})
			}
		case rel[0] > '/':
			pastDir = true
		}
	}
	f.Complete = !aws.ToBool(page.IsTruncated) || pastDir
	if f.Dir || f.Complete {
		return f, nil
	}
	if !f.File {
		o, err := c.Head(ctx, key)
		if err == nil {
			return objstore.Found{File: true, Size: o.Size, MTime: o.MTime}, nil
		}
		if !errors.Is(err, iofs.ErrNotExist) {
			return objstore.Found{}, err
		}
	}
	err = c.List(ctx, key+"/", true, func(objstore.Entry) bool {
		f.Dir = true
		return false
	})
	if err != nil {
		return objstore.Found{}, err
	}
	return f, nil
}

// relativeKey decodes a key a LIST returned and returns it relative to
// the prefix full. LISTs ask for URL encoding, so that keys with
// characters XML cannot carry survive; a store that honours it says so
// (enc), one that ignores it (versitygw) sends keys as they are. ok is
// false for a key that does not decode or lies outside the prefix: a
// store's answer is input, and such a key must not become a name here.
func relativeKey(key *string, full string, enc types.EncodingType) (string, bool) {
	k := aws.ToString(key)
	if enc == types.EncodingTypeUrl {
		var err error
		if k, err = url.QueryUnescape(k); err != nil {
			return "", false
		}
	}
	rel, ok := strings.CutPrefix(k, full)
	if !ok {
		return "", false
	}
	return rel, true
}

// lookupPage is the page size of Lookup's LIST: one S3 page. It bounds
// what a lookup learns about the tree below a directory it meets. A
// variable only so that a test can reach past a page cheaply.
var lookupPage int32 = 1000

// List implements Store.
func (c *Client) List(ctx context.Context, prefix string, recursive bool, fn func(objstore.Entry) bool) error {
	full := c.key(prefix)
	in := &s3.ListObjectsV2Input{Bucket: &c.bucket, Prefix: aws.String(full), EncodingType: types.EncodingTypeUrl}
	if !recursive {
		in.Delimiter = aws.String("/")
	}
	p := s3.NewListObjectsV2Paginator(c.api, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return classify("list", prefix, err)
		}
		// A page's prefixes and objects are handed over in key order, as
		// the store sorted them, so a name that is both a file and a
		// directory ("a" and "a/b") comes as the file first whatever the
		// page boundaries.
		prefixes, objects := page.CommonPrefixes, page.Contents
		for len(prefixes) > 0 || len(objects) > 0 {
			if len(objects) == 0 || len(prefixes) > 0 && aws.ToString(prefixes[0].Prefix) < aws.ToString(objects[0].Key) {
				name, ok := relativeKey(prefixes[0].Prefix, full, page.EncodingType)
				name = strings.TrimSuffix(name, "/")
				prefixes = prefixes[1:]
				if ok && name != "" && !fn(objstore.Entry{Name: name, Dir: true}) {
					return nil
				}
				continue
			}
			o := objects[0]
			objects = objects[1:]
			name, ok := relativeKey(o.Key, full, page.EncodingType)
			// A key ending in "/" is a directory marker some tools create;
			// it is not a file.
			if !ok || name == "" || strings.HasSuffix(name, "/") {
				continue
			}
			if !fn(objstore.Entry{Name: name, Size: aws.ToInt64(o.Size), MTime: aws.ToTime(o.LastModified)}) {
				return nil
			}
		}
	}
	return nil
}
