// The helpers that mount a cache for a test, unmounting in t.Cleanup and
// checking for leaks.

package fs

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/cache"
	"github.com/s3mediafs/s3mediafs/cache/objstore"
	"github.com/s3mediafs/s3mediafs/fs/mounttest"
)

// testMount serves a fresh cache over store at a temporary directory and
// unmounts in t.Cleanup, even when the test fails.
func testMount(t *testing.T, store objstore.Store, cacheDir string) (string, *cache.Cache) {
	t.Helper()
	return testMountOpts(t, cache.Options{Store: store, Dir: cacheDir})
}

// testMountOpts is testMount with cache options; unset timings get fast
// test values. Cached files are served by passthrough, as in production.
func testMountOpts(t *testing.T, o cache.Options) (string, *cache.Cache) {
	t.Helper()
	mnt, c, _ := testMountWith(t, o, Options{Passthrough: true})
	return mnt, c
}

// ioModes are the two ways a mount serves cached files, for tests that
// run in both: the kernel directly (passthrough), or through the daemon
// (older kernels, or passthrough: false).
var ioModes = []struct {
	name        string
	passthrough bool
}{{"passthrough", true}, {"daemon", false}}

// testMountWith is testMountOpts with the mount's options; a test that
// asks for passthrough fails in CI when the kernel does not give it, and
// is skipped elsewhere.
func testMountWith(t *testing.T, o cache.Options, mo Options) (string, *cache.Cache, *Server) {
	t.Helper()
	return testMountFull(t, o, MountOptions{Options: mo})
}

// testMountFull is testMountWith with the mount-level options too.
func testMountFull(t *testing.T, o cache.Options, mopts MountOptions) (string, *cache.Cache, *Server) {
	t.Helper()
	mo := mopts.Options
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("mount tests need root, and CI runs as root")
		}
		t.Skip("mount tests need root (DirectMount)")
	}
	mounttest.CheckLeaks(t, testRoot, "")
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	o.Log = log
	if o.RetryMin == 0 {
		o.RetryMin, o.RetryMax = 10*time.Millisecond, 200*time.Millisecond
	}
	if o.RevalidateAfter == 0 {
		o.RevalidateAfter = time.Second
	}
	if o.StoreTimeout == 0 {
		o.StoreTimeout = 3 * time.Second
	}
	c, err := cache.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	mo.Log = log
	if mo.EntryTimeout == 0 {
		mo.EntryTimeout, mo.AttrTimeout = time.Second, time.Second
	}
	mopts.Options = mo
	server, err := Mount(mnt, c, mopts)
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	if mo.Passthrough && !server.Passthrough {
		server.Unmount()
		server.Wait()
		c.Close()
		if os.Getenv("CI") != "" {
			t.Fatalf("passthrough unavailable on the CI kernel: %v", server.PassthroughOff)
		}
		t.Skipf("passthrough unavailable: %v", server.PassthroughOff)
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
	return mnt, c, server
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

func payload(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ seed
	}
	return b
}
