// Package s3test gives tests a fresh bucket on the local S3 server that
// scripts/s3-server.sh starts, and an HTTP proxy that injects faults.
package s3test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/objstore"

	"github.com/s3mediafs/s3mediafs/s3"
)

// Server names the test S3 server.
type Server struct {
	Endpoint, AccessKey, SecretKey string
}

// FromEnv returns the server scripts/s3-server.sh started. Without one the
// test is skipped, except under CI, where that is a failure: CI must run
// the integration tests.
func FromEnv(t testing.TB) Server {
	t.Helper()
	s := Server{
		Endpoint:  os.Getenv("S3MEDIAFS_TEST_ENDPOINT"),
		AccessKey: os.Getenv("S3MEDIAFS_TEST_ACCESS_KEY"),
		SecretKey: os.Getenv("S3MEDIAFS_TEST_SECRET_KEY"),
	}
	if s.Endpoint == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("S3MEDIAFS_TEST_ENDPOINT is not set under CI: run the tests through scripts/test.sh")
		}
		t.Skip("no test S3 server: run through scripts/test.sh")
	}
	return s
}

// NewBucketName returns a fresh, valid bucket name.
func NewBucketName() string {
	var b [6]byte
	rand.Read(b[:])
	return "t-" + hex.EncodeToString(b[:])
}

// Config returns a client configuration for bucket on this server through
// endpoint (the server itself when empty).
func (s Server) Config(bucket, prefix, endpoint string) s3.Config {
	if endpoint == "" {
		endpoint = s.Endpoint
	}
	return s3.Config{
		Bucket: bucket, Prefix: prefix, Endpoint: endpoint, ForcePathStyle: true,
		AccessKeyID: s.AccessKey, SecretAccessKey: s.SecretKey, RequestTimeout: 10 * time.Second,
	}
}

// Bucket creates a new bucket and returns a client for it with prefix.
func Bucket(t testing.TB, prefix string) (*s3.Client, Server, string) {
	t.Helper()
	srv := FromEnv(t)
	bucket := NewBucketName()
	c, err := s3.New(context.Background(), srv.Config(bucket, prefix, ""), nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.CreateBucket(ctx); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	return c, srv, bucket
}

// Object returns the bytes stored at key and whether it exists, failing
// the test on any other error.
func Object(t testing.TB, st objstore.Store, key string) ([]byte, bool) {
	t.Helper()
	body, err := st.Get(context.Background(), key, 0, -1)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false
	}
	if err != nil {
		t.Fatalf("get %q: %v", key, err)
	}
	defer body.Close()
	b, err := io.ReadAll(body)
	if err != nil {
		t.Fatal(err)
	}
	return b, true
}
