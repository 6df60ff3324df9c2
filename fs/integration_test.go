// A mount over a real S3 server: Synapse's write pattern, read-through with
// an empty cache, namespace operations, a store outage, and the old
// provider's layout.

package fs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/fs/mounttest"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
	"github.com/s3mediafs/s3mediafs/s3"
	"github.com/s3mediafs/s3mediafs/s3/s3test"
)

// counted wraps a store and counts requests by operation.
type counted struct {
	objstore.Faulty
	puts, gets, heads, lists, deletes atomic.Int32
}

func countRequests(inner objstore.Store) *counted {
	c := &counted{}
	c.Faulty = objstore.Faulty{Store: inner,
		BeforePut:    func(context.Context, string) error { c.puts.Add(1); return nil },
		BeforeGet:    func(context.Context, string) error { c.gets.Add(1); return nil },
		BeforeHead:   func(context.Context, string) error { c.heads.Add(1); return nil },
		BeforeList:   func(context.Context, string) error { c.lists.Add(1); return nil },
		BeforeDelete: func(context.Context, string) error { c.deletes.Add(1); return nil },
	}
	return c
}

func objectBytes(t *testing.T, st objstore.Store, key string) ([]byte, bool) {
	t.Helper()
	return s3test.Object(t, st, key)
}

func TestSynapsePatternOverS3(t *testing.T) {
	client, _, _ := s3test.Bucket(t, "synapse")
	st := countRequests(client)
	mnt, c := testMount(t, st, "")
	files := map[string][]byte{
		"local_content/ab/cd/efghijklmnop":                         payload(123_457, 1),
		"local_thumbnails/ab/cd/efghijklmnop/32-32-image-png-crop": payload(3_000, 2),
		"remote_content/example.org/xy/zz/remoteid":                payload(1_100_000, 3),
		"local_content/ab/cd/empty":                                {},
	}
	for p, data := range files {
		mounttest.MustWriteLikeSynapse(t, filepath.Join(mnt, p), data)
	}
	drain(t, c)
	for p, data := range files {
		got, ok := objectBytes(t, client, p)
		if !ok || !bytes.Equal(got, data) {
			t.Fatalf("%s in S3: ok=%v, %d bytes, want %d", p, ok, len(got), len(data))
		}
	}
	if n := st.puts.Load(); n != int32(len(files)) {
		t.Errorf("PUTs: %d for %d files", n, len(files))
	}
	// The provider's layout: the prefix is used verbatim, no "/" added.
	raw, err := s3.New(context.Background(), s3test.FromEnv(t).Config(client.Bucket(), "", ""), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(raw.Close)
	if _, ok := objectBytes(t, raw, "synapselocal_content/ab/cd/efghijklmnop"); !ok {
		t.Fatal("object not at prefix+path")
	}

	// Random reads with seek, as Pillow does.
	f, err := os.Open(filepath.Join(mnt, "remote_content/example.org/xy/zz/remoteid"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for _, off := range []int64{1_000_000, 0, 777_777} {
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(f, buf); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, files["remote_content/example.org/xy/zz/remoteid"][off:off+4096]) {
			t.Fatalf("read at %d differs", off)
		}
	}
	f.Close()

	// Purge: os.remove (ENOENT tolerated), then rmdir up the chain until
	// ENOTEMPTY; and shutil.rmtree of the thumbnails.
	if err := os.Remove(filepath.Join(mnt, "local_content/ab/cd/efghijklmnop")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(mnt, "local_content/ab/cd/efghijklmnop")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("second remove: %v", err)
	}
	if err := os.Remove(filepath.Join(mnt, "local_content/ab/cd")); !errors.Is(err, syscall.ENOTEMPTY) {
		t.Fatalf("rmdir of a directory with a file left: %v", err)
	}
	if err := os.RemoveAll(filepath.Join(mnt, "local_thumbnails/ab/cd/efghijklmnop")); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"local_thumbnails/ab/cd", "local_thumbnails/ab"} {
		if err := os.Remove(filepath.Join(mnt, d)); err != nil {
			t.Fatalf("rmdir %s: %v", d, err)
		}
	}
	drain(t, c)
	for _, p := range []string{"local_content/ab/cd/efghijklmnop", "local_thumbnails/ab/cd/efghijklmnop/32-32-image-png-crop"} {
		if _, ok := objectBytes(t, client, p); ok {
			t.Errorf("%s still in S3 after removal", p)
		}
	}
	if _, ok := objectBytes(t, client, "local_content/ab/cd/empty"); !ok {
		t.Error("the file left in place vanished from S3")
	}
}

func TestReadThroughWithEmptyCache(t *testing.T) {
	client, _, _ := s3test.Bucket(t, "pre/")
	data := payload(2_500_000, 9)
	if err := client.Put(context.Background(), "remote_content/matrix.org/ab/cd/media", bytes.NewReader(data), int64(len(data)), nil); err != nil {
		t.Fatal(err)
	}
	st := countRequests(client)
	mnt, _ := testMount(t, st, "")
	p := filepath.Join(mnt, "remote_content/matrix.org/ab/cd/media")
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.Mode().IsRegular() || fi.Size() != int64(len(data)) {
		t.Fatalf("stat of a store-only file: mode %v size %d", fi.Mode(), fi.Size())
	}
	if st.gets.Load() != 0 {
		t.Fatal("stat fetched the file")
	}
	got, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read-through: %v, %d bytes", err, len(got))
	}
	if n := st.gets.Load(); n != 1 {
		t.Fatalf("GETs for the first read: %d, want 1", n)
	}
	if _, err := os.ReadFile(p); err != nil || st.gets.Load() != 1 {
		t.Fatalf("second read went to S3: %v, %d GETs", err, st.gets.Load())
	}
	entries, err := os.ReadDir(filepath.Join(mnt, "remote_content"))
	if err != nil || len(entries) != 1 || entries[0].Name() != "matrix.org" || !entries[0].IsDir() {
		t.Fatalf("readdir: %v %v", entries, err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "remote_content/nope")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stat of an unknown name: %v", err)
	}
}

func TestNamespaceOperations(t *testing.T) {
	client, _, _ := s3test.Bucket(t, "")
	mnt, c := testMount(t, client, "")
	d := filepath.Join(mnt, "url_cache/2026-11-25")
	// os.makedirs(exist_ok=True), twice.
	for range 2 {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(d, 0o755); !errors.Is(err, os.ErrExist) {
		t.Fatalf("mkdir of an existing dir: %v", err)
	}
	a := filepath.Join(d, "a")
	mounttest.MustWriteLikeSynapse(t, a, []byte("0123456789"))
	if err := os.Truncate(a, 4); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(a); string(b) != "0123" {
		t.Fatalf("after truncate: %q", b)
	}
	b := filepath.Join(d, "b")
	if err := os.Rename(a, b); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(a); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("old name after rename: %v", err)
	}
	if got, _ := os.ReadFile(b); string(got) != "0123" {
		t.Fatalf("new name after rename: %q", got)
	}
	if err := os.Rename(d, d+"x"); err != nil {
		t.Fatalf("directory rename: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(d+"x", filepath.Base(b))); string(got) != "0123" {
		t.Fatalf("file after its directory's rename: %q", got)
	}
	if err := os.Rename(d+"x", d); err != nil {
		t.Fatalf("directory rename back: %v", err)
	}
	var sfs syscall.Statfs_t
	if err := syscall.Statfs(mnt, &sfs); err != nil || sfs.Blocks == 0 {
		t.Fatalf("statfs: %v %+v", err, sfs)
	}
	if err := os.WriteFile(filepath.Join(mnt, "file-not-dir"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(mnt, "file-not-dir", "x"), 0o755); !errors.Is(err, syscall.ENOTDIR) {
		t.Fatalf("mkdir under a file: %v", err)
	}
	drain(t, c)
	if got, ok := objectBytes(t, client, "url_cache/2026-11-25/b"); !ok || string(got) != "0123" {
		t.Fatalf("renamed object: %q %v", got, ok)
	}
	if _, ok := objectBytes(t, client, "url_cache/2026-11-25/a"); ok {
		t.Fatal("old key left after rename")
	}
	entries, err := os.ReadDir(d)
	if err != nil || len(entries) != 1 || entries[0].Name() != "b" {
		t.Fatalf("readdir: %v %v", entries, err)
	}
}

func TestStoreOutage(t *testing.T) {
	client, srv, bucket := s3test.Bucket(t, "")
	data := payload(50_000, 5)
	if err := client.Put(context.Background(), "remote_content/x/uncached", bytes.NewReader(data), int64(len(data)), nil); err != nil {
		t.Fatal(err)
	}
	proxy := s3test.NewProxy(t, srv.Endpoint)
	viaProxy, err := s3.New(context.Background(), srv.Config(bucket, "", proxy.URL), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(viaProxy.Close)
	mnt, c := testMount(t, viaProxy, "")
	mounttest.MustWriteLikeSynapse(t, filepath.Join(mnt, "local_content/aa/bb/cached"), data)
	drain(t, c)
	if _, err := os.Stat(filepath.Join(mnt, "remote_content/x/uncached")); err != nil {
		t.Fatal(err)
	}

	proxy.SetFail(func(*http.Request) int { return http.StatusServiceUnavailable })
	// Writes go on.
	mounttest.MustWriteLikeSynapse(t, filepath.Join(mnt, "local_content/aa/bb/during-outage"), data)
	// Cached reads go on.
	if got, err := os.ReadFile(filepath.Join(mnt, "local_content/aa/bb/cached")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("cached read during outage: %v", err)
	}
	// Uncached reads fail with EIO, in bounded time.
	start := time.Now()
	_, err = os.ReadFile(filepath.Join(mnt, "remote_content/x/uncached"))
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("uncached read during outage: %v, want EIO", err)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Fatalf("uncached read took %v to fail", took)
	}

	proxy.SetFail(nil)
	drain(t, c)
	if got, ok := objectBytes(t, client, "local_content/aa/bb/during-outage"); !ok || !bytes.Equal(got, data) {
		t.Fatal("file written during the outage did not reach S3")
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "remote_content/x/uncached")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("uncached read after the outage: %v", err)
	}
}

// TestProviderLayoutReadThrough: a bucket filled the way
// synapse-s3-storage-provider and s3_media_upload fill it (prefix used
// verbatim, no "/" added) reads through a fresh mount with an empty cache;
// a large object arrives as parallel ranged GETs.
func TestProviderLayoutReadThrough(t *testing.T) {
	raw, srv, bucket := s3test.Bucket(t, "")
	objects := map[string][]byte{
		"synapselocal_content/ab/cd/efghij":                             payload(70_000, 1),
		"synapselocal_thumbnails/ab/cd/efghij/320-240-image-jpeg-scale": payload(9_000, 2),
		"synapseremote_content/matrix.org/Ab/Cd/XyZ":                    payload(20<<20+333, 3),
	}
	for k, v := range objects {
		if err := raw.Put(context.Background(), k, bytes.NewReader(v), int64(len(v)), nil); err != nil {
			t.Fatal(err)
		}
	}
	proxy := s3test.NewProxy(t, srv.Endpoint)
	client, err := s3.New(context.Background(), srv.Config(bucket, "synapse", proxy.URL), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	mnt, _ := testMount(t, client, "")
	for k, v := range objects {
		p := filepath.Join(mnt, k[len("synapse"):])
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, v) {
			t.Fatalf("%s through the mount: %v, %d bytes", k, err, len(got))
		}
	}
	ranged := 0
	for _, r := range proxy.Requests() {
		if r.Op() == "GetObject" && r.Header.Get("Range") != "" {
			ranged++
		}
	}
	if ranged < 3 {
		t.Fatalf("a 20 MiB miss made %d ranged GETs, want one per 8 MiB chunk", ranged)
	}
}
