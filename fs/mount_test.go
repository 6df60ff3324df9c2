package fs

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/cache"
	"github.com/s3mediafs/s3mediafs/s3"
)

// testMount serves a fresh cache over store at a temporary directory and
// unmounts in t.Cleanup, even when the test fails.
func testMount(t *testing.T, store cache.Store, cacheDir string) (string, *cache.Cache) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mount tests need root (DirectMount)")
	}
	if cacheDir == "" {
		cacheDir = t.TempDir()
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	c, err := cache.Open(cache.Options{Dir: cacheDir, Store: store, Log: log, RetryMin: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond, RevalidateAfter: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	server, err := Mount(mnt, c, MountOptions{Options: Options{Log: log, EntryTimeout: time.Second, AttrTimeout: time.Second}})
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	c.Start()
	t.Cleanup(func() {
		if err := server.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
		server.Wait()
		if err := c.Close(); err != nil {
			t.Errorf("close cache: %v", err)
		}
	})
	return mnt, c
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(b, "\n")))
	return len(b), nil
}

func drain(t *testing.T, c *cache.Cache) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if n, err := c.Drain(ctx); err != nil {
		t.Fatalf("drain: %d left: %v", n, err)
	}
}

// synapseWrite writes a file the way Synapse does: makedirs, open "wb" on
// the final name, 16 KiB writes, close, then getsize and a full re-read.
func synapseWrite(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(data); off += 16 << 10 {
		end := min(off+16<<10, len(data))
		if _, err := f.Write(data[off:end]); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != int64(len(data)) {
		t.Fatalf("getsize after close: %d, want %d", fi.Size(), len(data))
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("re-read after close differs")
	}
}

func payload(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ seed
	}
	return b
}

func TestSynapsePatternUploads(t *testing.T) {
	mem := s3.NewMem()
	mnt, c := testMount(t, mem, "")
	data := payload(100_000, 1)
	synapseWrite(t, filepath.Join(mnt, "local_content/ab/cd/efghij"), data)
	drain(t, c)
	got, ok := mem.Object("local_content/ab/cd/efghij")
	if !ok || !bytes.Equal(got, data) {
		t.Fatalf("object in store: ok=%v len=%d", ok, len(got))
	}
	if n := mem.Count("put"); n != 1 {
		t.Errorf("PUTs: %d, want 1", n)
	}
	// os.remove, then rmdir up the chain until ENOTEMPTY.
	if err := os.Remove(filepath.Join(mnt, "local_content/ab/cd/efghij")); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"local_content/ab/cd", "local_content/ab"} {
		if err := os.Remove(filepath.Join(mnt, d)); err != nil {
			t.Fatalf("rmdir %s: %v", d, err)
		}
	}
	drain(t, c)
	if _, ok := mem.Object("local_content/ab/cd/efghij"); ok {
		t.Fatal("object still in store after unlink")
	}
	if _, err := os.Stat(filepath.Join(mnt, "local_content/ab")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stat removed dir: %v", err)
	}
}

func TestReadThroughFromStore(t *testing.T) {
	mem := s3.NewMem()
	data := payload(300_000, 2)
	mem.SetObject("remote_content/example.org/ab/cd/xyz", data)
	mnt, _ := testMount(t, mem, "")
	p := filepath.Join(mnt, "remote_content/example.org/ab/cd/xyz")
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.Mode().IsRegular() || fi.Size() != int64(len(data)) {
		t.Fatalf("stat: mode %v size %d", fi.Mode(), fi.Size())
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1000)
	if _, err := f.ReadAt(buf, 123_456); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, data[123_456:124_456]) {
		t.Fatal("random read differs")
	}
	if n := mem.Count("get"); n != 1 {
		t.Errorf("GETs: %d, want 1", n)
	}
	entries, err := os.ReadDir(filepath.Join(mnt, "remote_content/example.org/ab/cd"))
	if err != nil || len(entries) != 1 || entries[0].Name() != "xyz" {
		t.Fatalf("readdir: %v %v", entries, err)
	}
	if err := os.Remove(filepath.Join(mnt, "remote_content/example.org/ab/cd")); !errors.Is(err, syscall.ENOTEMPTY) {
		t.Fatalf("rmdir non-empty: %v", err)
	}
}
