// The daemon's start-up steps one at a time, on the embedded store:
// openIndex, openStore, openCache, mountFS and runUntilSignal.

package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/fs/mounttest"
)

// embeddedConfig is the configuration --embedded-s3 makes, with its cache
// in a temporary directory.
func embeddedConfig(t *testing.T) Config {
	t.Helper()
	m := &mountArgs{cfg: defaultConfig(), embedded: t.TempDir()}
	if err := m.useEmbedded(); err != nil {
		t.Fatal(err)
	}
	m.cfg.CacheDir = t.TempDir()
	m.cfg.StoreTimeout = Duration(10 * time.Second)
	return m.cfg
}

// A second openIndex of a cache_dir in use is refused, naming the likely
// cause.
func TestOpenIndexRefusesACacheInUse(t *testing.T) {
	dir := t.TempDir()
	ix, err := openIndex(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if _, err := openIndex(dir, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "another s3mediafs") {
		t.Fatalf("second openIndex: %v", err)
	}
}

// openStore starts the embedded store and checks its bucket; close stops
// it. A second one on the same directory fails at once, and a store that
// cannot be used is an error that names the bucket.
func TestOpenStore(t *testing.T) {
	cfg := embeddedConfig(t)
	log := slog.New(slog.DiscardHandler)
	ctx := context.Background()
	objects := filepath.Join(t.TempDir(), "objects")
	client, _, closeStore, err := openStore(ctx, cfg, objects, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Put(ctx, "k", strings.NewReader("v"), 1, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, closeSecond, err := openStore(ctx, cfg, objects, nil, log); err == nil || !strings.Contains(err.Error(), "another s3mediafs") {
		closeSecond()
		t.Fatalf("a second embedded store on one directory: %v", err)
	}
	closeStore()
	if err := client.CheckBucket(ctx); err == nil {
		t.Fatal("the embedded store still answers after close")
	}

	// A store that does not answer is an outage, not a refusal: the
	// daemon mounts without it and says why.
	cfg.EndpointURL = "http://127.0.0.1:1" // nothing listens there
	client, unreachable, closeStore, err := openStore(ctx, cfg, "", nil, log)
	closeStore()
	if err != nil || client == nil || unreachable == nil || !strings.Contains(unreachable.Error(), "connection refused") {
		t.Fatalf("openStore of a store that does not answer: %v, %v", err, unreachable)
	}
	// A host name that does not exist is a wrong configuration.
	cfg.EndpointURL = "http://no-such-host.invalid"
	_, _, closeStore, err = openStore(ctx, cfg, "", nil, log)
	closeStore()
	if err == nil || !strings.Contains(err.Error(), `bucket "`+cfg.Bucket+`"`) {
		t.Fatalf("openStore of an endpoint that does not exist: %v", err)
	}
}

// The steps together: the index opened first keeps the store's multipart
// journal, the cache opens over both, mountFS serves it, and a signal
// makes runUntilSignal unmount and drain, with the file in the store.
func TestServeStepByStep(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounts: needs root")
	}
	root := t.TempDir()
	mounttest.CheckLeaks(t, root, "")
	cfg := embeddedConfig(t)
	cfg.MultipartThreshold, cfg.MultipartChunksize = 5<<20, 5<<20
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := t.Context()

	ix, err := openIndex(cfg.CacheDir, log)
	if err != nil {
		t.Fatal(err)
	}
	client, _, closeStore, err := openStore(ctx, cfg, filepath.Join(root, "objects"), ix, log)
	if err != nil {
		ix.Close()
		t.Fatal(err)
	}
	t.Cleanup(closeStore)
	c, err := openCache(cfg, ix, client, newMetrics(), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	mnt := filepath.Join(root, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	server, _, err := mountFS(mnt, c, cfg, newMetrics(), false, &liveMountHandover{}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Unmount() })
	c.Start()

	data := bytes.Repeat([]byte("m"), 6<<20) // above the multipart threshold
	if err := mounttest.WriteLikeSynapse(filepath.Join(mnt, "local_content/ab/cd/ef"), data); err != nil {
		t.Fatal(err)
	}
	sigs := make(chan os.Signal, 1)
	sigs <- syscall.SIGTERM
	runUntilSignal(ctx, mnt, server, c, sigs, nil, 30*time.Second, log)

	if b, err := os.ReadFile("/proc/self/mountinfo"); err != nil || strings.Contains(string(b), " "+mnt+" ") {
		t.Fatalf("still mounted after runUntilSignal (%v)", err)
	}
	body, err := client.Get(ctx, "local_content/ab/cd/ef", 0, -1)
	if err != nil {
		t.Fatalf("the file is not in the store after the drain: %v", err)
	}
	defer body.Close()
	if got, err := io.ReadAll(body); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the stored object: %d bytes, %v", len(got), err)
	}
	open := 0
	if err := ix.OpenMultiparts(func(string, string) { open++ }); err != nil || open != 0 {
		t.Fatalf("multipart uploads left in the journal: %d, %v", open, err)
	}
}
