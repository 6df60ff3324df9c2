package s3

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// Config says which bucket to use and how to reach it. Empty credentials
// fall through to the SDK's default chain (environment, shared files, web
// identity, instance metadata), which also refreshes temporary ones.
type Config struct {
	Bucket         string
	Prefix         string // prepended verbatim to every key, as synapse-s3-storage-provider does
	Region         string
	Endpoint       string // any S3-compatible store; empty means AWS
	ForcePathStyle bool
	// UnixSocket, if set, is where every connection goes, whatever the
	// endpoint's host: a store only its owner can reach (the quickstart's
	// embedded one).
	UnixSocket      string
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

	// StorageClass is sent on every PUT (STANDARD, STANDARD_IA…); empty
	// leaves the bucket's default.
	StorageClass string
	// StorageClasses overrides StorageClass for the keys of a top-level
	// tree (the first path component): remote_content: ONEZONE_IA.
	StorageClasses map[string]string
	// SSECustomerKey (the raw key, as the provider takes it) and
	// SSECustomerAlgorithm (default AES256) enable SSE-C on every request
	// that reads or writes object data.
	SSECustomerKey       string
	SSECustomerAlgorithm string
	// ServerSideEncryption is "AES256" (SSE-S3) or "aws:kms" (SSE-KMS, with
	// SSEKMSKeyID or the account's default key).
	ServerSideEncryption string
	SSEKMSKeyID          string
	// ChecksumWhenRequired stops the SDK from adding checksum headers that
	// some S3-compatible stores (B2, older Ceph and MinIO) reject; uploads
	// then carry Content-MD5 instead, so integrity is still checked.
	ChecksumWhenRequired bool
	// ResponseChecksumWhenRequired stops validating response checksums
	// unless the operation requires it.
	ResponseChecksumWhenRequired bool
	// ETagNotMD5 says the store's ETags are not the MD5 of single-part
	// objects (MinIO with automatic encryption does so), so that no
	// answer vouches for an object by its ETag.
	ETagNotMD5 bool

	// MultipartThreshold: objects at least this large are uploaded in
	// parts of MultipartPartSize, MultipartConcurrency at a time.
	MultipartThreshold   int64
	MultipartPartSize    int64
	MultipartConcurrency int
}

// Multipart defaults.
const (
	DefaultMultipartThreshold = 64 << 20
	DefaultMultipartPartSize  = 16 << 20
	minPartSize               = 5 << 20 // S3's minimum for all parts but the last
	maxParts                  = 10000
)

// MultipartJournal records multipart uploads while they are open, so that
// ones cut off by a crash can be aborted at the next start instead of
// leaving parts in the bucket. The cache implements it with its index.
// An entry with an empty upload ID is an intent: an upload being created
// whose ID may never have reached the journal.
type MultipartJournal interface {
	BeginMultipart(key, uploadID string) error
	EndMultipart(key, uploadID string) error
	// OpenMultiparts calls fn for every entry not ended.
	OpenMultiparts(fn func(key, uploadID string)) error
}

// journaled is a multipart upload a journal held when it was installed.
type journaled struct{ key, id string }

// Client is a Store backed by an S3 bucket through aws-sdk-go-v2.
type Client struct {
	api    *s3.Client
	bucket string
	prefix string
	cfg    Config
	log    *slog.Logger

	sseKey, sseKeyMD5 *string // SSE-C, base64 as the headers want them

	journal   MultipartJournal // nil: multipart uploads are not journaled
	opened    time.Time        // when New read the journal
	mu        sync.Mutex       // guards leftovers
	leftovers []journaled      // what a previous run left in the journal

	// transports are the HTTP transports the SDK built for this client,
	// so that Close can drop their idle connections.
	transports *transportSet
}

// transportSet records the HTTP transports built for one client.
type transportSet struct {
	mu sync.Mutex
	ts []*http.Transport
}

func (s *transportSet) add(t *http.Transport) {
	s.mu.Lock()
	s.ts = append(s.ts, t)
	s.mu.Unlock()
}

// Close drops the client's idle connections (and the goroutines that
// serve them). Requests made after it open new ones.
func (c *Client) Close() {
	c.transports.mu.Lock()
	defer c.transports.mu.Unlock()
	for _, t := range c.transports.ts {
		t.CloseIdleConnections()
	}
}

// New builds a Client. It does not contact the store; call CheckBucket for
// that. journal, if not nil, records multipart uploads while they are open.
// New reads what it holds, the uploads a previous run left open, for
// AbortLeftoverMultiparts to abort: build the client before anything of
// this run is uploaded through the journal.
func New(ctx context.Context, cfg Config, journal MultipartJournal, log *slog.Logger) (*Client, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Bucket == "" {
		return nil, errors.New("s3: bucket is required")
	}
	if err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	transports := &transportSet{}
	awsCfg, err := loadAWSConfig(ctx, cfg, transports)
	if err != nil {
		return nil, err
	}
	c := &Client{api: newAPI(awsCfg, cfg), bucket: cfg.Bucket, prefix: cfg.Prefix, cfg: cfg, log: log, transports: transports,
		journal: journal, opened: time.Now()}
	if journal != nil {
		if err := journal.OpenMultiparts(func(key, id string) { c.leftovers = append(c.leftovers, journaled{key, id}) }); err != nil {
			return nil, fmt.Errorf("s3: read the multipart journal: %w", err)
		}
	}
	if cfg.SSECustomerKey != "" {
		if cfg.SSECustomerAlgorithm == "" {
			c.cfg.SSECustomerAlgorithm = "AES256"
		}
		sum := md5.Sum([]byte(cfg.SSECustomerKey))
		c.sseKey = aws.String(base64.StdEncoding.EncodeToString([]byte(cfg.SSECustomerKey)))
		c.sseKeyMD5 = aws.String(base64.StdEncoding.EncodeToString(sum[:]))
	}
	return c, nil
}

// withDefaults fills in the defaults and refuses what S3 would refuse.
func (cfg *Config) withDefaults() error {
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 64
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 60 * time.Second
	}
	if cfg.MultipartThreshold <= 0 {
		cfg.MultipartThreshold = DefaultMultipartThreshold
	}
	if cfg.MultipartPartSize <= 0 {
		cfg.MultipartPartSize = DefaultMultipartPartSize
	}
	if cfg.MultipartPartSize < minPartSize {
		return fmt.Errorf("s3: multipart part size %d is below S3's minimum of 5 MiB", cfg.MultipartPartSize)
	}
	if cfg.MultipartConcurrency <= 0 {
		cfg.MultipartConcurrency = 4
	}
	if err := validStorageClass(cfg.StorageClass); err != nil {
		return err
	}
	for tree, sc := range cfg.StorageClasses {
		if err := validStorageClass(sc); err != nil {
			return fmt.Errorf("storage class of %s: %w", tree, err)
		}
	}
	switch cfg.ServerSideEncryption {
	case "", "AES256", "aws:kms", "aws:kms:dsse":
	default:
		return fmt.Errorf("s3: server-side encryption %q is not AES256, aws:kms or aws:kms:dsse", cfg.ServerSideEncryption)
	}
	if cfg.ServerSideEncryption != "" && cfg.SSECustomerKey != "" {
		return errors.New("s3: SSE-C (sse_customer_key) and SSE-S3/KMS exclude each other")
	}
	return nil
}

// loadAWSConfig is the SDK's configuration: the HTTP client (pooled, or
// dialing the embedded store's Unix socket), a short retry policy, the
// region and the credentials (static, or the SDK's default chain).
func loadAWSConfig(ctx context.Context, cfg Config, transports *transportSet) (aws.Config, error) {
	httpClient := awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		t.MaxIdleConns = cfg.MaxConns
		t.MaxIdleConnsPerHost = cfg.MaxConns
		t.MaxConnsPerHost = cfg.MaxConns
		t.ResponseHeaderTimeout = cfg.RequestTimeout
		dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
		t.DialContext = dialer.DialContext
		if cfg.UnixSocket != "" {
			t.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
				return dialer.DialContext(ctx, "unix", cfg.UnixSocket)
			}
		}
		transports.add(t)
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
			return aws.Config{}, errors.New("s3: access_key_id and secret_access_key go together")
		}
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken)))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("s3: load AWS config: %w", err)
	}
	return awsCfg, nil
}

// newAPI is the S3 client of the SDK for cfg's endpoint and checksum modes.
func newAPI(awsCfg aws.Config, cfg Config) *s3.Client {
	if awsCfg.Region == "" {
		// S3-compatible stores ignore the region but the signer needs one.
		awsCfg.Region = "us-east-1"
	}
	return s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.ForcePathStyle
		// Stores that do not return full-object checksums for multipart
		// objects are normal; the SDK would say so on stderr each time.
		o.DisableLogOutputChecksumValidationSkipped = true
		if cfg.ChecksumWhenRequired {
			o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		}
		if cfg.ResponseChecksumWhenRequired {
			o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		}
	})
}

// StorageClasses lists the classes objects may be written with: the ones
// that are readable at once (no restore), as media must be.
var StorageClasses = []string{"STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR"}

// storageClass is the class a PUT of key (relative to the prefix) is sent
// with: its tree's, else the default.
func (c *Client) storageClass(key string) types.StorageClass {
	tree, _, _ := strings.Cut(key, "/")
	if sc, ok := c.cfg.StorageClasses[tree]; ok {
		return types.StorageClass(sc)
	}
	return types.StorageClass(c.cfg.StorageClass)
}

func validStorageClass(sc string) error {
	if sc == "" {
		return nil
	}
	for _, ok := range StorageClasses {
		if sc == ok {
			return nil
		}
	}
	return fmt.Errorf("s3: storage class %q is not one of %s", sc, strings.Join(StorageClasses, ", "))
}

// CheckBucket verifies the bucket exists and the credentials may use it.
func (c *Client) CheckBucket(ctx context.Context) error {
	_, err := c.api.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &c.bucket})
	if err != nil {
		return classify("head-bucket", c.bucket, err)
	}
	return nil
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

func (c *Client) key(rel string) string { return c.prefix + rel }

func (c *Client) sseAlgorithm() *string {
	if c.sseKey == nil {
		return nil
	}
	return aws.String(c.cfg.SSECustomerAlgorithm)
}
