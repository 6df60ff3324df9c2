// Bytes a store sends are checked before the mount serves or keeps them:
// through a proxy that halves every object's body under a matching
// Content-Length, or flips one byte with every header intact, a fresh
// mount (empty cache) answers EIO for objects this mount wrote and for
// objects another tool wrote, names the key in its log, and serves the
// true bytes once the proxy is honest again, without a restart.

package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/fs/mounttest"
	"github.com/s3mediafs/s3mediafs/s3/s3test"
)

func TestLyingStoreIsNeverBelieved(t *testing.T) {
	client, srv, bucket := s3test.Bucket(t, "synapse/")
	files := map[string][]byte{
		"remote_content/other.org/ab/cd/foreign-small": payload(9_000, 1),
		"remote_content/other.org/ab/cd/foreign-large": payload(3<<20, 2),
		"local_content/ab/cd/ours-small":               payload(9_500, 3),
		"local_content/ab/cd/ours-large":               payload(3<<20+7, 4),
	}
	for rel, data := range files {
		if strings.Contains(rel, "foreign") {
			// Written by another tool: no checksum of ours; the store's ETag is its MD5.
			if err := client.Put(context.Background(), rel, bytes.NewReader(data), int64(len(data)), nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	writer := start(t, config(t, srv, "", bucket, t.TempDir(), ""), t.TempDir())
	for rel, data := range files {
		if strings.Contains(rel, "ours") {
			mounttest.MustWriteLikeSynapse(t, filepath.Join(writer.mnt, rel), data)
		}
	}
	writer.stop() // drains: everything is in the store

	for _, lie := range []s3test.Faults{{HalfBody: true}, {FlipByte: true}} {
		proxy, _, d := startThroughProxy(t, srv, bucket, "")
		proxy.SetFaults(lie, 1)
		// The foreign files first: after the store lied about them, ours
		// must still be found (a lie is an answer, not an outage).
		for _, rel := range []string{
			"remote_content/other.org/ab/cd/foreign-small", "remote_content/other.org/ab/cd/foreign-large",
			"local_content/ab/cd/ours-small", "local_content/ab/cd/ours-large",
		} {
			b, err := os.ReadFile(filepath.Join(d.mnt, rel))
			if !errors.Is(err, syscall.EIO) {
				t.Errorf("%+v: %s read as %d bytes, %v; want EIO", lie, rel, len(b), err)
			}
		}
		// The daemon's log reaches the test through a pipe, a moment
		// after the EIO it explains.
		for rel := range files {
			named := func() bool {
				logs := d.logs()
				return strings.Contains(logs, rel) && strings.Contains(logs, "fail their check")
			}
			deadline := time.Now().Add(10 * time.Second)
			for !named() && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			if !named() {
				t.Errorf("%+v: the log does not name %s as failing its check", lie, rel)
			}
		}
		proxy.SetFaults(s3test.Faults{}, 1)
		for rel, want := range files {
			b, err := os.ReadFile(filepath.Join(d.mnt, rel))
			if err != nil || !bytes.Equal(b, want) {
				t.Errorf("%+v: %s through the honest proxy: %d bytes, %v", lie, rel, len(b), err)
			}
		}
		d.terminate(t)
	}
}
