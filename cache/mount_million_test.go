// Opening a cache of a million entries, in a child process, for the
// benchmark.

package cache_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/cache"
	"github.com/s3mediafs/s3mediafs/cache/objstore"
	mediafs "github.com/s3mediafs/s3mediafs/fs"
)

// millionDirEnv names the cache directory the helper process mounts.
const millionDirEnv = "S3MEDIAFS_MILLION_CACHE_DIR"

// BenchmarkMountMillionEntries measures a restart of the mount with
// 1,000,000 files in the index, in a fresh process as a daemon start is:
// the time from opening the index to a mount that serves, and the
// process's resident memory once a path has been looked up through it.
//
//	go test -run XXX -bench MountMillion -benchtime 3x ./cache
func BenchmarkMountMillionEntries(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("mounting needs root")
	}
	dir := b.TempDir()
	c, err := cache.Open(cache.Options{Dir: dir, Store: objstore.NewMem()})
	if err != nil {
		b.Fatal(err)
	}
	cache.FillIndex(b, c, 1_000_000)
	if err := c.Close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var ready time.Duration
	var rss int64
	for range b.N {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMillionEntryMountHelper$", "-test.v")
		cmd.Env = append(os.Environ(), millionDirEnv+"="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("helper: %v\n%s", err, out)
		}
		var readyNS int64
		found := false
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			if _, err := fmt.Sscanf(strings.TrimSpace(sc.Text()), "RESULT ready_ns=%d rss_kib=%d", &readyNS, &rss); err == nil {
				found = true
			}
		}
		if !found {
			b.Fatalf("helper printed no result:\n%s", out)
		}
		ready = time.Duration(readyNS)
	}
	b.ReportMetric(float64(ready.Microseconds())/1000, "ready_ms")
	b.ReportMetric(float64(rss)/1024, "rss_MiB")
}

// TestMillionEntryMountHelper is the process BenchmarkMountMillionEntries
// starts; run alone, it skips.
func TestMillionEntryMountHelper(t *testing.T) {
	dir := os.Getenv(millionDirEnv)
	if dir == "" {
		t.Skip("the process BenchmarkMountMillionEntries starts")
	}
	mnt := t.TempDir()
	start := time.Now()
	c, err := cache.Open(cache.Options{Dir: dir, Store: objstore.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	server, err := mediafs.Mount(mnt, c, mediafs.MountOptions{Options: mediafs.Options{Passthrough: true}})
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	c.Start()
	ready := time.Since(start)
	t.Cleanup(func() {
		server.Unmount()
		server.Wait()
		c.Close()
	})
	if _, err := os.Stat(filepath.Join(mnt, "local_content/00/00/media0000000")); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("RESULT ready_ns=%d rss_kib=%d\n", ready.Nanoseconds(), statusKiB(t, "VmRSS"))
}

// statusKiB reads a figure (in KiB) from /proc/self/status.
func statusKiB(t *testing.T, field string) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			var kib int64
			fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kib)
			return kib
		}
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return 0
}
