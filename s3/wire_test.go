// What goes on the wire: storage classes, checksums, session tokens,
// SSE-C headers, and multipart uploads.

package s3_test

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/s3mediafs/s3mediafs/s3"
	"github.com/s3mediafs/s3mediafs/s3/s3test"
)

// viaProxy returns a client for a fresh bucket whose requests pass through
// a recording proxy, configured by cfg.
func viaProxy(t *testing.T, cfg func(*s3.Config)) (*s3.Client, *s3test.Proxy) {
	t.Helper()
	return journaledViaProxy(t, cfg, nil)
}

// journaledViaProxy is viaProxy with a multipart journal.
func journaledViaProxy(t *testing.T, cfg func(*s3.Config), journal s3.MultipartJournal) (*s3.Client, *s3test.Proxy) {
	t.Helper()
	_, srv, bucket := s3test.Bucket(t, "")
	proxy := s3test.NewProxy(t, srv.Endpoint)
	c := srv.Config(bucket, "p/", proxy.URL)
	if cfg != nil {
		cfg(&c)
	}
	client, err := s3.New(context.Background(), c, journal, nil)
	if err != nil {
		t.Fatal(err)
	}
	return client, proxy
}

func ops(p *s3test.Proxy, op string) []s3test.Request {
	var out []s3test.Request
	for _, r := range p.Requests() {
		if r.Op() == op {
			out = append(out, r)
		}
	}
	return out
}

func get(t *testing.T, c *s3.Client, key string) []byte {
	t.Helper()
	body, err := c.Get(context.Background(), key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	b, _ := io.ReadAll(body)
	return b
}

func TestStorageClassOnEveryPut(t *testing.T) {
	c, proxy := viaProxy(t, func(c *s3.Config) { c.StorageClass = "STANDARD_IA" })
	data := []byte("thumbnail")
	if err := c.Put(context.Background(), "k", bytes.NewReader(data), int64(len(data)), nil); err != nil {
		t.Fatal(err)
	}
	puts := ops(proxy, "PutObject")
	if len(puts) != 1 || puts[0].Header.Get("X-Amz-Storage-Class") != "STANDARD_IA" {
		t.Fatalf("PUT headers: %v", puts)
	}
	if !bytes.Equal(get(t, c, "k"), data) {
		t.Fatal("object differs")
	}
}

func TestChecksumModesOnTheWire(t *testing.T) {
	data := bytes.Repeat([]byte("x"), 1000)
	hasChecksum := func(r s3test.Request) bool {
		for k := range r.Header {
			k = strings.ToLower(k)
			if strings.HasPrefix(k, "x-amz-checksum-") || k == "x-amz-sdk-checksum-algorithm" || k == "x-amz-trailer" {
				return true
			}
		}
		return false
	}
	required, proxy := viaProxy(t, func(c *s3.Config) { c.ChecksumWhenRequired = true; c.ResponseChecksumWhenRequired = true })
	if err := required.Put(context.Background(), "k", bytes.NewReader(data), int64(len(data)), nil); err != nil {
		t.Fatal(err)
	}
	put := ops(proxy, "PutObject")[0]
	if hasChecksum(put) {
		t.Fatalf("when_required sent checksum headers: %v", put.Header)
	}
	if put.Header.Get("Content-Md5") == "" {
		t.Fatal("when_required sent no Content-MD5: upload integrity unchecked")
	}
	supported, proxy2 := viaProxy(t, nil)
	if err := supported.Put(context.Background(), "k", bytes.NewReader(data), int64(len(data)), nil); err != nil {
		t.Fatal(err)
	}
	if put := ops(proxy2, "PutObject")[0]; !hasChecksum(put) {
		t.Fatalf("when_supported sent no checksum: %v", put.Header)
	}
}

func TestSessionTokenSent(t *testing.T) {
	c, proxy := viaProxy(t, func(c *s3.Config) { c.SessionToken = "session-token-value" })
	// The test server does not issue tokens and may refuse the request;
	// what matters here is what went on the wire.
	c.Head(context.Background(), "k")
	reqs := proxy.Requests()
	if len(reqs) == 0 || reqs[0].Header.Get("X-Amz-Security-Token") != "session-token-value" {
		t.Fatalf("no session token header: %v", reqs)
	}
}

func TestSSECHeadersOnPutGetHead(t *testing.T) {
	key := "0123456789abcdef0123456789abcdef"
	c, proxy := viaProxy(t, func(c *s3.Config) { c.SSECustomerKey = key })
	data := []byte("secret media")
	// Whether the test server implements SSE-C or not, every request that
	// touches object data must carry the key headers.
	c.Put(context.Background(), "k", bytes.NewReader(data), int64(len(data)), nil)
	c.Head(context.Background(), "k")
	if body, err := c.Get(context.Background(), "k", 0, -1); err == nil {
		body.Close()
	}
	for _, op := range []string{"PutObject", "HeadObject", "GetObject"} {
		rs := ops(proxy, op)
		if len(rs) == 0 {
			t.Fatalf("no %s seen", op)
		}
		h := rs[0].Header
		if h.Get("X-Amz-Server-Side-Encryption-Customer-Algorithm") != "AES256" ||
			h.Get("X-Amz-Server-Side-Encryption-Customer-Key") == "" ||
			h.Get("X-Amz-Server-Side-Encryption-Customer-Key-Md5") == "" {
			t.Fatalf("%s without SSE-C headers: %v", op, h)
		}
	}
}

func TestMultipartUploadAboveThreshold(t *testing.T) {
	for _, whenRequired := range []bool{true, false} {
		t.Run(map[bool]string{true: "when_required", false: "when_supported"}[whenRequired], func(t *testing.T) {
			testMultipart(t, whenRequired)
		})
	}
}

func testMultipart(t *testing.T, whenRequired bool) {
	journal := &recordingJournal{}
	c, proxy := journaledViaProxy(t, func(c *s3.Config) {
		c.MultipartThreshold, c.MultipartPartSize = 5<<20, 5<<20
		c.ChecksumWhenRequired = whenRequired
	}, journal)
	data := bytes.Repeat([]byte("0123456789abcdef"), (12<<20)/16)
	if err := c.Put(context.Background(), "big", bytes.NewReader(data), int64(len(data)), nil); err != nil {
		t.Fatal(err)
	}
	if n := len(ops(proxy, "UploadPart")); n != 3 {
		t.Fatalf("parts: %d, want 3", n)
	}
	for _, r := range ops(proxy, "UploadPart") {
		if whenRequired && r.Header.Get("Content-Md5") == "" {
			t.Fatal("part without Content-MD5")
		}
		if !whenRequired && r.Header.Get("X-Amz-Checksum-Crc32") == "" && r.Header.Get("X-Amz-Trailer") == "" {
			t.Fatalf("part without a CRC32: %v", r.Header)
		}
	}
	if len(ops(proxy, "CompleteMultipartUpload")) != 1 || len(ops(proxy, "PutObject")) != 0 {
		t.Fatalf("requests: %v", proxy.Requests())
	}
	if !bytes.Equal(get(t, c, "big"), data) {
		t.Fatal("multipart object differs")
	}
	if journal.begun != 2 || journal.ended != 2 { // the intent, then the upload ID
		t.Fatalf("journal: %+v", journal)
	}
	open, err := c.MultipartUploads(context.Background())
	if err != nil || len(open) != 0 {
		t.Fatalf("unfinished uploads left: %v %v", open, err)
	}
	// Ranged reads.
	body, err := c.Get(context.Background(), "big", 5<<20, 100)
	if err != nil || body.Len != 100 || body.Size != int64(len(data)) {
		t.Fatalf("ranged get: %v %d of %d", err, body.Len, body.Size)
	}
	part, _ := io.ReadAll(body)
	body.Close()
	if !bytes.Equal(part, data[5<<20:5<<20+100]) {
		t.Fatal("ranged read differs")
	}
}

type recordingJournal struct{ begun, ended int }

func (j *recordingJournal) BeginMultipart(key, id string) error       { j.begun++; return nil }
func (j *recordingJournal) EndMultipart(key, id string) error         { j.ended++; return nil }
func (j *recordingJournal) OpenMultiparts(func(key, id string)) error { return nil }

// storage_classes sets a class per top-level tree (remote media Synapse
// can fetch again from its origin in a cheaper one), on single PUTs and
// multipart uploads; other trees get storage_class.
func TestStorageClassPerTree(t *testing.T) {
	c, proxy := viaProxy(t, func(c *s3.Config) {
		c.StorageClass = "STANDARD"
		c.StorageClasses = map[string]string{"remote_content": "ONEZONE_IA", "local_thumbnails": "STANDARD_IA"}
		c.MultipartThreshold, c.MultipartPartSize = 5<<20, 5<<20
	})
	ctx := context.Background()
	put := func(key string, n int) {
		t.Helper()
		if err := c.Put(ctx, key, bytes.NewReader(make([]byte, n)), int64(n), nil); err != nil {
			t.Fatal(err)
		}
	}
	put("remote_content/example.org/ab/cd/x", 10)
	put("remote_content/example.org/ab/cd/big", 6<<20)
	put("local_thumbnails/ab/cd/x/32-32-image-png-crop", 10)
	put("local_content/ab/cd/x", 10)
	want := map[string]string{
		"remote_content/example.org/ab/cd/x":            "ONEZONE_IA",
		"remote_content/example.org/ab/cd/big":          "ONEZONE_IA",
		"local_thumbnails/ab/cd/x/32-32-image-png-crop": "STANDARD_IA",
		"local_content/ab/cd/x":                         "STANDARD",
	}
	seen := 0
	for _, r := range proxy.Requests() {
		if r.Op() != "PutObject" && r.Op() != "CreateMultipartUpload" {
			continue
		}
		for key, class := range want {
			if strings.HasSuffix(r.Path, "/p/"+key) {
				seen++
				if got := r.Header.Get("X-Amz-Storage-Class"); got != class {
					t.Errorf("%s %s: storage class %q, want %q", r.Op(), key, got, class)
				}
			}
		}
	}
	if seen != len(want) {
		t.Errorf("saw %d PUTs or multipart creations for %d keys", seen, len(want))
	}
	if _, err := s3.New(ctx, s3.Config{Bucket: "b", StorageClasses: map[string]string{"remote_content": "GLACIER"}}, nil, nil); err == nil {
		t.Error("a class that needs a restore was accepted for a tree")
	}
}
