package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// Config says which bucket to use and how to reach it. Empty credentials
// fall through to the SDK's default chain (environment, shared files, web
// identity, instance metadata).
type Config struct {
	Bucket          string
	Prefix          string // prepended verbatim to every key, as synapse-s3-storage-provider does
	Region          string
	Endpoint        string // any S3-compatible store; empty means AWS
	ForcePathStyle  bool
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	// MaxConns bounds idle and active connections per host; it should be at
	// least the upload concurrency plus the readers, or requests queue for a
	// socket.
	MaxConns int
	// RequestTimeout bounds one HTTP attempt, so a blackholed store cannot
	// hang a caller.
	RequestTimeout time.Duration
	// ChecksumWhenRequired stops the SDK from adding checksum headers that
	// some S3-compatible stores reject.
	ChecksumWhenRequired bool
}

// Client is a Store backed by an S3 bucket through aws-sdk-go-v2.
type Client struct {
	api    *s3.Client
	bucket string
	prefix string
	log    *slog.Logger
}

// New builds a Client. It does not contact the store; call CheckBucket for that.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Client, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("s3: bucket is required")
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 64
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 60 * time.Second
	}
	httpClient := awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		t.MaxIdleConns = cfg.MaxConns
		t.MaxIdleConnsPerHost = cfg.MaxConns
		t.MaxConnsPerHost = cfg.MaxConns
		t.ResponseHeaderTimeout = cfg.RequestTimeout
		t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	})
	opts := []func(*config.LoadOptions) error{
		config.WithHTTPClient(httpClient),
		config.WithRetryer(func() aws.Retryer {
			// A few quick attempts per call; the cache's upload queue does
			// the long, capped backoff across calls.
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = 3
				o.MaxBackoff = 2 * time.Second
				// No client-side retry quota: during an outage it would
				// stop retries for reads too; the upload queue paces itself.
				o.RateLimiter = ratelimit.None
			})
		}),
	}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.AccessKeyID != "" || cfg.SecretAccessKey != "" {
		if cfg.AccessKeyID == "" || cfg.SecretAccessKey == "" {
			return nil, errors.New("s3: access_key_id and secret_access_key go together")
		}
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken)))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3: load AWS config: %w", err)
	}
	if awsCfg.Region == "" {
		// S3-compatible stores ignore the region but the signer needs one.
		awsCfg.Region = "us-east-1"
	}
	api := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.ForcePathStyle
		if cfg.ChecksumWhenRequired {
			o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
			o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		}
	})
	return &Client{api: api, bucket: cfg.Bucket, prefix: cfg.Prefix, log: log}, nil
}

// CheckBucket verifies the bucket exists and the credentials may use it.
func (c *Client) CheckBucket(ctx context.Context) error {
	_, err := c.api.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &c.bucket})
	if err != nil {
		return classify("head-bucket", c.bucket, err)
	}
	return nil
}

func (c *Client) key(rel string) string { return c.prefix + rel }

// Put implements Store. The body's length is sent as Content-Length, which
// AWS and several compatible stores require.
func (c *Client) Put(ctx context.Context, key string, body io.ReadSeeker, size int64) error {
	_, err := c.api.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        &c.bucket,
		Key:           aws.String(c.key(key)),
		Body:          body,
		ContentLength: aws.Int64(size),
	})
	return classify("put", key, err)
}

// Get implements Store.
func (c *Client) Get(ctx context.Context, key string, off int64) (io.ReadCloser, int64, error) {
	in := &s3.GetObjectInput{Bucket: &c.bucket, Key: aws.String(c.key(key))}
	if off > 0 {
		in.Range = aws.String(fmt.Sprintf("bytes=%d-", off))
	}
	out, err := c.api.GetObject(ctx, in)
	if err != nil {
		var re *awshttp.ResponseError
		if off > 0 && errors.As(err, &re) && re.HTTPStatusCode() == http.StatusRequestedRangeNotSatisfiable {
			return io.NopCloser(strings.NewReader("")), 0, nil
		}
		return nil, 0, classify("get", key, err)
	}
	return out.Body, aws.ToInt64(out.ContentLength), nil
}

// Head implements Store.
func (c *Client) Head(ctx context.Context, key string) (int64, time.Time, error) {
	out, err := c.api.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &c.bucket, Key: aws.String(c.key(key))})
	if err != nil {
		return 0, time.Time{}, classify("head", key, err)
	}
	return aws.ToInt64(out.ContentLength), aws.ToTime(out.LastModified), nil
}

// Delete implements Store.
func (c *Client) Delete(ctx context.Context, key string) error {
	_, err := c.api.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &c.bucket, Key: aws.String(c.key(key))})
	err = classify("delete", key, err)
	if errors.Is(err, iofs.ErrNotExist) {
		return nil
	}
	return err
}

// List implements Store.
func (c *Client) List(ctx context.Context, prefix string, recursive bool, fn func(string, int64, time.Time, bool) bool) error {
	full := c.key(prefix)
	in := &s3.ListObjectsV2Input{Bucket: &c.bucket, Prefix: aws.String(full)}
	if !recursive {
		in.Delimiter = aws.String("/")
	}
	p := s3.NewListObjectsV2Paginator(c.api, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return classify("list", prefix, err)
		}
		for _, cp := range page.CommonPrefixes {
			name := strings.TrimSuffix(strings.TrimPrefix(aws.ToString(cp.Prefix), full), "/")
			if name != "" && !fn(name, 0, time.Time{}, true) {
				return nil
			}
		}
		for _, o := range page.Contents {
			name := strings.TrimPrefix(aws.ToString(o.Key), full)
			// A key ending in "/" is a directory marker some tools create;
			// it is not a file.
			if name == "" || strings.HasSuffix(name, "/") {
				continue
			}
			if !fn(name, aws.ToInt64(o.Size), aws.ToTime(o.LastModified), false) {
				return nil
			}
		}
	}
	return nil
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
	switch {
	case errors.As(err, &nsk), errors.As(err, &nf), e.Code == "NoSuchKey",
		e.Status == http.StatusNotFound && e.Code != "NoSuchBucket" && op != "head-bucket":
		e.Err = fmt.Errorf("%w: %v", iofs.ErrNotExist, err)
	case permanentCodes[e.Code]:
		e.perm = true
	case e.Status == http.StatusForbidden, e.Status == http.StatusBadRequest && e.Code != "RequestTimeout":
		e.perm = true
	}
	return e
}

// CreateBucket creates the bucket; an existing bucket that we own is fine.
func (c *Client) CreateBucket(ctx context.Context) error {
	_, err := c.api.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &c.bucket})
	var owned *types.BucketAlreadyOwnedByYou
	if errors.As(err, &owned) {
		return nil
	}
	return classify("create-bucket", c.bucket, err)
}

// Bucket is the bucket this client uses.
func (c *Client) Bucket() string { return c.bucket }
