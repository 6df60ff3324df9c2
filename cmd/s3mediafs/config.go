package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/s3mediafs/s3mediafs/s3"
)

// Config is the daemon's configuration. The S3 keys use the names of
// synapse-s3-storage-provider, so its block can be pasted in.
type Config struct {
	Bucket          string `yaml:"bucket"`
	Prefix          string `yaml:"prefix"`
	RegionName      string `yaml:"region_name"`
	EndpointURL     string `yaml:"endpoint_url"`
	ForcePathStyle  bool   `yaml:"force_path_style"`
	AccessKeyID     string `yaml:"access_key_id"`
	SecretAccessKey string `yaml:"secret_access_key"`
	SessionToken    string `yaml:"session_token"`

	// Provider options (synapse-s3-storage-provider's names).
	StorageClass string `yaml:"storage_class"`
	// StorageClasses sets a class per top-level tree, over storage_class.
	StorageClasses             map[string]string `yaml:"storage_classes"`
	SSECustomerKey             string            `yaml:"sse_customer_key"`
	SSECustomerAlgo            string            `yaml:"sse_customer_algo"`
	RequestChecksumCalculation string            `yaml:"request_checksum_calculation"`
	ResponseChecksumValidation string            `yaml:"response_checksum_validation"`
	// VerifyETag: an ETag of 32 hex digits on an unencrypted object is
	// its MD5, and checks what a GET brings; false for a store whose
	// ETags are not (objects without a checksum are then checked by
	// length alone).
	VerifyETag bool `yaml:"verify_etag"`
	// ScrubRate bounds the bytes per second the background scrub reads to
	// check cached files against their checksum; 0 turns it off.
	ScrubRate ByteSize `yaml:"scrub_rate"`
	// ThreadpoolSize is the provider's name for upload_concurrency.
	ThreadpoolSize int `yaml:"threadpool_size"`
	// StoreLocal and StoreRemote: whether local_* and remote_* go to S3.
	StoreLocal  bool `yaml:"store_local"`
	StoreRemote bool `yaml:"store_remote"`
	// StoreSynchronous: close() returns once S3 has the file.
	StoreSynchronous bool `yaml:"store_synchronous"`
	// LocalOnlyDirs: top-level directories kept out of S3.
	LocalOnlyDirs []string `yaml:"local_only_dirs"`
	// DeleteFromS3: unlink deletes the object (false: keep it, hide it).
	DeleteFromS3 bool `yaml:"delete_from_s3"`
	// RmdirWaitsForStore: rmdir of a directory the index cannot prove
	// empty in S3 waits for a LIST (false: it answers from the index and
	// S3 is checked in the background).
	RmdirWaitsForStore bool `yaml:"rmdir_waits_for_store"`
	// ServerSideEncryption: AES256 (SSE-S3) or aws:kms (SSE-KMS).
	ServerSideEncryption string `yaml:"server_side_encryption"`
	SSEKMSKeyID          string `yaml:"sse_kms_key_id"`
	// Multipart uploads above MultipartThreshold, in MultipartChunksize parts.
	MultipartThreshold ByteSize `yaml:"multipart_threshold"`
	MultipartChunksize ByteSize `yaml:"multipart_chunksize"`

	// ListAheadKeys: how many objects below a directory a lookup that
	// found it records ahead of the lookups that follow (0: off).
	ListAheadKeys int `yaml:"list_ahead_keys"`
	// BatchDeletes sends owed deletes as DeleteObjects requests of up
	// to 1,000 keys (false: one DELETE a key).
	BatchDeletes bool `yaml:"batch_deletes"`

	CacheDir          string `yaml:"cache_dir"`
	UploadConcurrency int    `yaml:"upload_concurrency"`

	// CacheMaxSize bounds the local data files; 0 leaves only the floor.
	CacheMaxSize ByteSize `yaml:"cache_max_size"`
	// CacheMinFree is the free space kept on the cache filesystem.
	CacheMinFree FreeSpace `yaml:"cache_min_free"`
	// CacheMaxAge evicts clean files not opened for this long; 0 is off.
	CacheMaxAge Duration `yaml:"cache_max_age"`
	// DirtyMaxSize bounds bytes not yet in S3; default half of cache_max_size.
	DirtyMaxSize ByteSize `yaml:"dirty_max_size"`
	// SpaceWait bounds how long a writer waits for room before ENOSPC.
	SpaceWait Duration `yaml:"space_wait"`

	// DrainTimeout bounds how long a stop waits for owed uploads.
	DrainTimeout Duration `yaml:"drain_timeout"`
	// StoreTimeout bounds a fetch of a file that is not cached, and one
	// S3 request attempt.
	StoreTimeout Duration `yaml:"store_timeout"`
	// LookupTimeout bounds one lookup of an unknown name in S3.
	LookupTimeout Duration `yaml:"lookup_timeout"`
	// RevalidateAfter: how long a clean file's existence in the store is
	// trusted before a lookup checks again (other hosts' deletes).
	RevalidateAfter Duration `yaml:"revalidate_after"`
	// RevalidateWaits: the lookup that finds a file due for revalidation
	// waits for the HEAD (false: it is answered from the index and the
	// HEAD runs behind it).
	RevalidateWaits bool `yaml:"revalidate_waits"`
	// NegativeCacheTTL: how long "not in the store" is trusted.
	NegativeCacheTTL Duration `yaml:"negative_cache_ttl"`
	// FetchAheadMax: the largest file whose download its stat starts,
	// when S3 alone has it, taking its metadata from the GET (0: none;
	// files of 16 MiB or more are fetched as ranges and asked with a HEAD).
	FetchAheadMax ByteSize `yaml:"fetch_ahead_max"`
	// MadeDirTrust: how long after this host made a directory a name it
	// lacks is absent without asking S3 (0: negative_cache_ttl).
	MadeDirTrust Duration `yaml:"made_dir_trust"`
	// Passthrough lets the kernel read and write cached files directly
	// (FUSE passthrough, Linux ≥ 6.9, as root); off, every byte passes
	// through the daemon.
	Passthrough bool `yaml:"passthrough"`
	// EntryTimeout and AttrTimeout: how long the kernel caches names and
	// attributes.
	EntryTimeout Duration `yaml:"entry_timeout"`
	AttrTimeout  Duration `yaml:"attr_timeout"`

	// AllowNonEmptyMountpoint mounts over a media store that still holds
	// files, hiding them (they are not imported); off, such a mount is
	// refused.
	AllowNonEmptyMountpoint bool `yaml:"allow_non_empty_mountpoint"`

	// FileMode and DirMode are the permission bits of files and
	// directories whose own are not set here (everything fetched from
	// S3); Umask, if set, derives both (0666 and 0777 less it) where they
	// are not given.
	FileMode *Mode `yaml:"file_mode"`
	DirMode  *Mode `yaml:"dir_mode"`
	Umask    *Mode `yaml:"umask"`

	// UID and GID own what has no owner of its own (objects without
	// metadata, and new files with new_file_owner: mount).
	UID        *uint32 `yaml:"uid"`
	GID        *uint32 `yaml:"gid"`
	AllowOther *bool   `yaml:"allow_other"`
	// NewFileOwner is who owns a file made through the mount: "caller"
	// (the process that made it, as on a local disk) or "mount" (uid and
	// gid, whoever made it).
	NewFileOwner string `yaml:"new_file_owner"`
	// ReadObjectMetadata (default true) reads the owner, mode and mtime of
	// an object learned from a listing with one HEAD at its first lookup;
	// false shows the defaults for such objects and saves the request.
	ReadObjectMetadata *bool `yaml:"read_object_metadata"`

	LogLevel  string `yaml:"log_level"`
	LogFormat string `yaml:"log_format"`
	// LogFile, if set, receives the log instead of stderr.
	LogFile string `yaml:"log_file"`

	// ControlSocket is where status and flush reach the daemon; default
	// /run/s3mediafs/<escaped mount point>.sock.
	ControlSocket string `yaml:"control_socket"`
	// MetricsAddress serves Prometheus /metrics; "" turns it off.
	MetricsAddress string `yaml:"metrics_address"`
}

// modes returns the permission bits of files and directories that have
// none of their own: file_mode and dir_mode, else what umask leaves of
// 0666 and 0777, else 0644 and 0755.
func (c *Config) modes() (file, dir uint32) {
	file, dir = 0o644, 0o755
	if c.Umask != nil {
		file, dir = 0o666&^uint32(*c.Umask), 0o777&^uint32(*c.Umask)
	}
	if c.FileMode != nil {
		file = uint32(*c.FileMode)
	}
	if c.DirMode != nil {
		dir = uint32(*c.DirMode)
	}
	return file, dir
}

// localOnly returns the predicate for paths kept out of S3: the
// local_only_dirs, plus local_* or remote_* when store_local or
// store_remote is off.
func (c *Config) localOnly() func(string) bool {
	dirs := map[string]bool{}
	for _, d := range c.LocalOnlyDirs {
		dirs[d] = true
	}
	if !c.StoreLocal {
		dirs["local_content"], dirs["local_thumbnails"] = true, true
	}
	if !c.StoreRemote {
		dirs["remote_content"], dirs["remote_thumbnail"] = true, true
	}
	if len(dirs) == 0 {
		return nil
	}
	return func(p string) bool {
		top, _, _ := strings.Cut(p, "/")
		return dirs[top]
	}
}

// defaultConfig holds every default in one place; the README lists them.
func defaultConfig() Config {
	return Config{
		CacheDir:           "/var/cache/s3mediafs",
		UploadConcurrency:  8,
		BatchDeletes:       true,
		ListAheadKeys:      10000,
		StoreLocal:         true,
		StoreRemote:        true,
		DeleteFromS3:       true,
		LocalOnlyDirs:      []string{"url_cache", "url_cache_thumbnails"},
		MultipartThreshold: 64 << 20,
		MultipartChunksize: 16 << 20,
		VerifyETag:         true,
		ScrubRate:          4 << 20,
		CacheMinFree:       FreeSpace{Percent: 5},
		SpaceWait:          Duration(60 * time.Second),
		DrainTimeout:       Duration(60 * time.Second),
		StoreTimeout:       Duration(30 * time.Second),
		LookupTimeout:      Duration(3 * time.Second),
		RevalidateAfter:    Duration(time.Minute),
		NegativeCacheTTL:   Duration(2 * time.Second),
		MadeDirTrust:       Duration(time.Minute),
		FetchAheadMax:      4 << 20,
		Passthrough:        true,
		EntryTimeout:       Duration(10 * time.Second),
		AttrTimeout:        Duration(10 * time.Second),
		LogLevel:           "info",
		MetricsAddress:     "127.0.0.1:9464",
		LogFormat:          "text",
		NewFileOwner:       "caller",
	}
}

// s3ConfigOf is the S3 client configuration the daemon and import use.
func s3ConfigOf(cfg Config) s3.Config {
	return s3.Config{
		Bucket: cfg.Bucket, Prefix: cfg.Prefix, Region: cfg.RegionName, Endpoint: cfg.EndpointURL,
		ForcePathStyle: cfg.ForcePathStyle, AccessKeyID: cfg.AccessKeyID, SecretAccessKey: cfg.SecretAccessKey,
		SessionToken: cfg.SessionToken, MaxConns: cfg.UploadConcurrency*4 + 32, RequestTimeout: cfg.StoreTimeout.D(),
		StorageClass: cfg.StorageClass, StorageClasses: cfg.StorageClasses,
		SSECustomerKey: cfg.SSECustomerKey, SSECustomerAlgorithm: cfg.SSECustomerAlgo,
		ServerSideEncryption: cfg.ServerSideEncryption, SSEKMSKeyID: cfg.SSEKMSKeyID,
		ChecksumWhenRequired:         cfg.RequestChecksumCalculation == "when_required",
		ResponseChecksumWhenRequired: cfg.ResponseChecksumValidation == "when_required",
		ETagNotMD5:                   !cfg.VerifyETag,
		MultipartThreshold:           int64(cfg.MultipartThreshold),
		MultipartPartSize:            int64(cfg.MultipartChunksize),
	}
}

// resolveConfig layers the configuration: defaults, then Synapse's
// homeserver.yaml (whose media_store_path it returns), then our file, then
// -o options. Flags, applied by the caller, come last. Every subcommand
// loads its configuration here, so all of them merge the same way. A
// homeserver.yaml without the provider's block is refused only when no
// file of ours names the bucket instead.
func resolveConfig(configPath, synapsePath, mountOpts string) (Config, string, error) {
	cfg := defaultConfig()
	optSynapse, err := applyMountOptions(mountOpts, &Config{})
	if err != nil {
		return cfg, "", err
	}
	if optSynapse != "" {
		synapsePath = optSynapse
	}
	mediaStore := ""
	if synapsePath != "" {
		mediaStore, err = loadSynapseConfig(synapsePath, &cfg)
		if err != nil && !(errors.Is(err, errNoProvider) && configPath != "") {
			return cfg, mediaStore, err
		}
	}
	if configPath != "" {
		if err := loadConfigFile(configPath, &cfg); err != nil {
			return cfg, "", err
		}
	}
	_, err = applyMountOptions(mountOpts, &cfg)
	return cfg, mediaStore, err
}

// loadConfigFile reads YAML from path over cfg. Unknown keys are errors
// that name the key, because a misspelt option silently ignored is a bucket
// silently misconfigured.
func loadConfigFile(path string, cfg *Config) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	cfg.ThreadpoolSize = 0
	if err := dec.Decode(cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty file sets nothing
		}
		return fmt.Errorf("config %s: %s", path, strings.ReplaceAll(err.Error(), "field ", "unknown key "))
	}
	// threadpool_size is the provider's name for upload_concurrency.
	if tp := cfg.ThreadpoolSize; tp != 0 {
		var keys map[string]any
		_ = yaml.Unmarshal(b, &keys)
		if _, both := keys["upload_concurrency"]; both && cfg.UploadConcurrency != tp {
			return fmt.Errorf("config %s: threadpool_size (%d) and upload_concurrency (%d) disagree", path, tp, cfg.UploadConcurrency)
		}
		cfg.UploadConcurrency, cfg.ThreadpoolSize = tp, 0
	}
	return nil
}

// validate checks a complete configuration.
func (c *Config) validate() error {
	errs := slices.Concat(c.bucketErrors(), c.cacheErrors(), c.uploadErrors(), c.daemonErrors())
	if len(errs) > 0 {
		return fmt.Errorf("invalid configuration: %w", errors.Join(errs...))
	}
	return nil
}

// bucketErrors checks where the bucket is and how to reach it.
func (c *Config) bucketErrors() (errs []error) {
	if c.Bucket == "" {
		errs = append(errs, errors.New("bucket is required"))
	}
	if (c.AccessKeyID == "") != (c.SecretAccessKey == "") {
		errs = append(errs, errors.New("access_key_id and secret_access_key must be given together"))
	}
	if c.EndpointURL != "" && !strings.HasPrefix(c.EndpointURL, "http://") && !strings.HasPrefix(c.EndpointURL, "https://") {
		errs = append(errs, fmt.Errorf("endpoint_url %q must start with http:// or https://", c.EndpointURL))
	}
	return errs
}

// cacheErrors checks the cache's directory, bounds and times.
func (c *Config) cacheErrors() (errs []error) {
	if c.CacheDir == "" {
		errs = append(errs, errors.New("cache_dir must not be empty"))
	}
	if c.UploadConcurrency < 1 || c.UploadConcurrency > 1024 {
		errs = append(errs, fmt.Errorf("upload_concurrency %d must be between 1 and 1024", c.UploadConcurrency))
	}
	if c.ListAheadKeys < 0 || c.ListAheadKeys > 1000000 {
		errs = append(errs, fmt.Errorf("list_ahead_keys %d must be between 0 (off) and 1000000", c.ListAheadKeys))
	}
	if len(c.Prefix) >= 1024 {
		errs = append(errs, errors.New("prefix is longer than an S3 key may be"))
	}
	for name, d := range map[string]Duration{
		"drain_timeout": c.DrainTimeout, "store_timeout": c.StoreTimeout, "revalidate_after": c.RevalidateAfter,
		"negative_cache_ttl": c.NegativeCacheTTL, "entry_timeout": c.EntryTimeout, "attr_timeout": c.AttrTimeout,
		"cache_max_age": c.CacheMaxAge, "space_wait": c.SpaceWait, "lookup_timeout": c.LookupTimeout,
		"made_dir_trust": c.MadeDirTrust,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative", name))
		}
	}
	if c.ScrubRate < 0 {
		errs = append(errs, errors.New("scrub_rate must not be negative"))
	}
	if c.FetchAheadMax < 0 {
		errs = append(errs, errors.New("fetch_ahead_max must not be negative"))
	}
	if c.CacheMaxSize < 0 || c.DirtyMaxSize < 0 {
		errs = append(errs, errors.New("cache_max_size and dirty_max_size must not be negative"))
	}
	if c.CacheMaxSize > 0 && c.DirtyMaxSize > c.CacheMaxSize {
		errs = append(errs, fmt.Errorf("dirty_max_size (%d) exceeds cache_max_size (%d)", c.DirtyMaxSize, c.CacheMaxSize))
	}
	return errs
}

// uploadErrors checks how objects are written: checksums, storage
// classes, encryption, multipart, and which trees go to S3.
func (c *Config) uploadErrors() (errs []error) {
	for name, v := range map[string]string{
		"request_checksum_calculation": c.RequestChecksumCalculation,
		"response_checksum_validation": c.ResponseChecksumValidation,
	} {
		if v != "" && v != "when_required" && v != "when_supported" {
			errs = append(errs, fmt.Errorf("%s %q is not when_required or when_supported", name, v))
		}
	}
	if c.StorageClass != "" && !slices.Contains(s3.StorageClasses, c.StorageClass) {
		errs = append(errs, fmt.Errorf("storage_class %q is not one of %s", c.StorageClass, strings.Join(s3.StorageClasses, ", ")))
	}
	for tree, sc := range c.StorageClasses {
		if tree == "" || strings.Contains(tree, "/") {
			errs = append(errs, fmt.Errorf("storage_classes: %q is not a top-level directory name", tree))
		}
		if !slices.Contains(s3.StorageClasses, sc) {
			errs = append(errs, fmt.Errorf("storage_classes: %s: %q is not one of %s", tree, sc, strings.Join(s3.StorageClasses, ", ")))
		}
	}
	if c.SSECustomerAlgo != "" && c.SSECustomerAlgo != "AES256" {
		errs = append(errs, fmt.Errorf("sse_customer_algo %q: S3 supports only AES256", c.SSECustomerAlgo))
	}
	if c.SSECustomerKey != "" && len(c.SSECustomerKey) != 32 {
		errs = append(errs, fmt.Errorf("sse_customer_key must be 32 bytes for AES256, not %d", len(c.SSECustomerKey)))
	}
	switch c.ServerSideEncryption {
	case "", "AES256", "aws:kms", "aws:kms:dsse":
	default:
		errs = append(errs, fmt.Errorf("server_side_encryption %q is not AES256, aws:kms or aws:kms:dsse", c.ServerSideEncryption))
	}
	if c.ServerSideEncryption != "" && c.SSECustomerKey != "" {
		errs = append(errs, errors.New("sse_customer_key (SSE-C) and server_side_encryption exclude each other"))
	}
	if c.SSEKMSKeyID != "" && !strings.HasPrefix(c.ServerSideEncryption, "aws:kms") {
		errs = append(errs, errors.New("sse_kms_key_id needs server_side_encryption: aws:kms"))
	}
	if c.MultipartChunksize < 5<<20 {
		errs = append(errs, errors.New("multipart_chunksize must be at least 5MiB (S3's minimum part size)"))
	}
	if c.MultipartThreshold < c.MultipartChunksize {
		errs = append(errs, errors.New("multipart_threshold must be at least multipart_chunksize"))
	}
	if !c.StoreLocal && !c.StoreRemote {
		errs = append(errs, errors.New("store_local and store_remote are both off: nothing would go to S3"))
	}
	for _, d := range c.LocalOnlyDirs {
		if d == "" || strings.Contains(d, "/") || d == "." || d == ".." {
			errs = append(errs, fmt.Errorf("local_only_dirs entry %q is not a top-level directory name", d))
		}
	}
	return errs
}

// daemonErrors checks the daemon's own settings.
func (c *Config) daemonErrors() (errs []error) {
	if c.StoreTimeout == 0 {
		errs = append(errs, errors.New("store_timeout must be positive"))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log_level %q is not one of debug, info, warn, error", c.LogLevel))
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log_format %q is not text or json", c.LogFormat))
	}
	if c.NewFileOwner != "caller" && c.NewFileOwner != "mount" {
		errs = append(errs, fmt.Errorf("new_file_owner %q is not caller or mount", c.NewFileOwner))
	}
	return errs
}
