package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
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

	CacheDir          string `yaml:"cache_dir"`
	UploadConcurrency int    `yaml:"upload_concurrency"`

	// CacheMaxSize bounds the local data files; 0 leaves only the floor.
	CacheMaxSize ByteSize `yaml:"cache_max_size"`
	// CacheMinFree is the free space kept on the cache filesystem.
	CacheMinFree FreeSpace `yaml:"cache_min_free"`
	// CacheMaxAge evicts clean files not opened for this long; 0 is off.
	CacheMaxAge time.Duration `yaml:"cache_max_age"`
	// DirtyMaxSize bounds bytes not yet in S3; default half of cache_max_size.
	DirtyMaxSize ByteSize `yaml:"dirty_max_size"`
	// SpaceWait bounds how long a writer waits for room before ENOSPC.
	SpaceWait time.Duration `yaml:"space_wait"`

	// DrainTimeout bounds how long a stop waits for owed uploads.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
	// StoreTimeout bounds a lookup or a fetch of a file that is not cached.
	StoreTimeout time.Duration `yaml:"store_timeout"`
	// RevalidateAfter: how long a clean file's existence in the store is
	// trusted before a lookup checks again (other hosts' deletes).
	RevalidateAfter time.Duration `yaml:"revalidate_after"`
	// NegativeCacheTTL: how long "not in the store" is trusted.
	NegativeCacheTTL time.Duration `yaml:"negative_cache_ttl"`
	// EntryTimeout and AttrTimeout: how long the kernel caches names and
	// attributes.
	EntryTimeout time.Duration `yaml:"entry_timeout"`
	AttrTimeout  time.Duration `yaml:"attr_timeout"`

	UID        *uint32 `yaml:"uid"`
	GID        *uint32 `yaml:"gid"`
	AllowOther *bool   `yaml:"allow_other"`

	LogLevel  string `yaml:"log_level"`
	LogFormat string `yaml:"log_format"`
}

// defaultConfig holds every default in one place; the README lists them.
func defaultConfig() Config {
	return Config{
		CacheDir:          "/var/cache/s3mediafs",
		UploadConcurrency: 8,
		CacheMinFree:      FreeSpace{Percent: 5},
		SpaceWait:         60 * time.Second,
		DrainTimeout:      60 * time.Second,
		StoreTimeout:      30 * time.Second,
		RevalidateAfter:   time.Minute,
		NegativeCacheTTL:  2 * time.Second,
		EntryTimeout:      time.Second,
		AttrTimeout:       time.Second,
		LogLevel:          "info",
		LogFormat:         "text",
	}
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
	if err := dec.Decode(cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty file sets nothing
		}
		return fmt.Errorf("config %s: %s", path, strings.ReplaceAll(err.Error(), "field ", "unknown key "))
	}
	return nil
}

// validate checks a complete configuration.
func (c *Config) validate() error {
	var errs []error
	if c.Bucket == "" {
		errs = append(errs, errors.New("bucket is required"))
	}
	if (c.AccessKeyID == "") != (c.SecretAccessKey == "") {
		errs = append(errs, errors.New("access_key_id and secret_access_key must be given together"))
	}
	if c.EndpointURL != "" && !strings.HasPrefix(c.EndpointURL, "http://") && !strings.HasPrefix(c.EndpointURL, "https://") {
		errs = append(errs, fmt.Errorf("endpoint_url %q must start with http:// or https://", c.EndpointURL))
	}
	if c.CacheDir == "" {
		errs = append(errs, errors.New("cache_dir must not be empty"))
	}
	if c.UploadConcurrency < 1 || c.UploadConcurrency > 1024 {
		errs = append(errs, fmt.Errorf("upload_concurrency %d must be between 1 and 1024", c.UploadConcurrency))
	}
	if len(c.Prefix) >= 1024 {
		errs = append(errs, errors.New("prefix is longer than an S3 key may be"))
	}
	for name, d := range map[string]time.Duration{
		"drain_timeout": c.DrainTimeout, "store_timeout": c.StoreTimeout, "revalidate_after": c.RevalidateAfter,
		"negative_cache_ttl": c.NegativeCacheTTL, "entry_timeout": c.EntryTimeout, "attr_timeout": c.AttrTimeout,
		"cache_max_age": c.CacheMaxAge, "space_wait": c.SpaceWait,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative", name))
		}
	}
	if c.CacheMaxSize < 0 || c.DirtyMaxSize < 0 {
		errs = append(errs, errors.New("cache_max_size and dirty_max_size must not be negative"))
	}
	if c.CacheMaxSize > 0 && c.DirtyMaxSize > c.CacheMaxSize {
		errs = append(errs, fmt.Errorf("dirty_max_size (%d) exceeds cache_max_size (%d)", c.DirtyMaxSize, c.CacheMaxSize))
	}
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
	if len(errs) > 0 {
		return fmt.Errorf("invalid configuration: %w", errors.Join(errs...))
	}
	return nil
}
