// Package s3test gives tests a fresh bucket on the local S3 server that
// scripts/s3-server.sh starts, and an HTTP proxy that injects faults.
package s3test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

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
	c, err := s3.New(context.Background(), srv.Config(bucket, prefix, ""), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.CreateBucket(ctx); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	return c, srv, bucket
}

// Proxy forwards to an S3 server and can fail requests on demand.
type Proxy struct {
	URL string

	mu       sync.Mutex
	fail     func(*http.Request) int // status to answer instead of forwarding; 0 forwards
	requests []Request               // every request seen, in order
}

// Request is what the proxy saw of one request.
type Request struct {
	Method, Path, Query string
	Header              http.Header
	Status              int // the answer's status; 0 while in flight
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Op names the S3 operation of a request, from its method and query.
func (r Request) Op() string {
	q, _ := url.ParseQuery(r.Query)
	switch {
	case r.Method == http.MethodPost && q.Has("uploads"):
		return "CreateMultipartUpload"
	case r.Method == http.MethodPost && q.Has("uploadId"):
		return "CompleteMultipartUpload"
	case r.Method == http.MethodPut && q.Has("partNumber"):
		return "UploadPart"
	case r.Method == http.MethodDelete && q.Has("uploadId"):
		return "AbortMultipartUpload"
	case r.Method == http.MethodGet && q.Has("uploads"):
		return "ListMultipartUploads"
	case r.Method == http.MethodGet && (q.Has("list-type") || q.Has("prefix") || q.Has("delimiter")):
		return "ListObjects"
	case r.Method == http.MethodPut:
		return "PutObject"
	case r.Method == http.MethodGet:
		return "GetObject"
	case r.Method == http.MethodHead:
		return "HeadObject"
	case r.Method == http.MethodDelete:
		return "DeleteObject"
	}
	return r.Method
}

// Requests returns the requests seen so far.
func (p *Proxy) Requests() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Request(nil), p.requests...)
}

// Reset forgets the requests seen so far.
func (p *Proxy) Reset() {
	p.mu.Lock()
	p.requests = nil
	p.mu.Unlock()
}

// NewProxy starts a proxy to target on 127.0.0.1, closed at test end.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{}
	rp := httputil.NewSingleHostReverseProxy(u)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		fail := p.fail
		i := len(p.requests)
		p.requests = append(p.requests, Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header.Clone()})
		p.mu.Unlock()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			p.mu.Lock()
			if i < len(p.requests) {
				p.requests[i].Status = sw.status
			}
			p.mu.Unlock()
		}()
		if fail != nil {
			if code := fail(r); code != 0 {
				sw.Header().Set("Content-Type", "application/xml")
				sw.WriteHeader(code)
				sw.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code><Message>injected</Message></Error>`))
				return
			}
		}
		rp.ServeHTTP(sw, r)
	}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	p.URL = "http://" + ln.Addr().String()
	return p
}

// SetFail installs fn to decide which requests fail (nil: none).
func (p *Proxy) SetFail(fn func(*http.Request) int) {
	p.mu.Lock()
	p.fail = fn
	p.mu.Unlock()
}
