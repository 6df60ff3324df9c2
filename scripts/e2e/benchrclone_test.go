// rclone mount over the same proxy, the peer the benchmarks compare with.

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/s3/s3test"
)

// rcloneFigures are rclone mount's cost for the same mix, through the
// same proxy: the peer the issue compares CPU against.
type rcloneFigures struct {
	write time.Duration // writing the mix through rclone's mount
	cpu   float64       // rclone's CPU seconds for the writes and their upload
}

// rcloneWrite writes mix through `rclone mount` (full VFS cache, the mode
// that matches a write-back cache) to a bucket of its own through proxy,
// waits until every file is PUT, and returns what it cost. ok is false
// when rclone or fusermount3 is not installed (scripts/bench.sh installs
// them where apt can).
func rcloneWrite(b *testing.B, srv s3test.Server, proxy *s3test.Proxy, mix []mixFile) (f rcloneFigures, ok bool) {
	b.Helper()
	rclone, err := exec.LookPath("rclone")
	if err != nil {
		b.Log("rclone is not installed: no rclone figures")
		return f, false
	}
	if _, err := exec.LookPath("fusermount3"); err != nil {
		b.Log("fusermount3 is not installed: no rclone figures")
		return f, false
	}
	_, _, bucket := s3test.Bucket(b, "")
	mnt := b.TempDir()
	cmd := exec.Command(rclone, "mount", "bench:"+bucket, mnt,
		"--vfs-cache-mode", "full", "--vfs-write-back", "0s", "--cache-dir", b.TempDir(),
		"--transfers", "8", "--dir-cache-time", "10s", "--config", os.DevNull)
	// rclone's S3 client refuses AWS_CA_BUNDLE (its transport is its own);
	// the store here is plain HTTP on loopback.
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_CA_BUNDLE=") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env,
		"RCLONE_CONFIG_BENCH_TYPE=s3", "RCLONE_CONFIG_BENCH_PROVIDER=Other",
		"RCLONE_CONFIG_BENCH_ACCESS_KEY_ID="+srv.AccessKey, "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY="+srv.SecretKey,
		"RCLONE_CONFIG_BENCH_ENDPOINT="+proxy.URL, "RCLONE_CONFIG_BENCH_REGION=us-east-1",
		"RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE=true")
	logPath := filepath.Join(b.TempDir(), "rclone.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		b.Fatal(err)
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		unmount(mnt)
		cmd.Process.Kill()
		cmd.Wait()
	})
	deadline := time.Now().Add(30 * time.Second)
	for !isMounted(mnt) {
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(logPath)
			b.Fatalf("rclone did not mount:\n%s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	puts := func() int {
		n := 0
		for _, r := range proxy.Requests() {
			if r.Op() == "PutObject" && r.Status/100 == 2 {
				n++
			}
		}
		return n
	}
	proxy.Reset()
	cpu0 := cpuSeconds(b, cmd.Process.Pid)
	f.write, _ = writeMix(b, mnt, mix)
	// rclone's uploads do not always finish against every store (on
	// SeaweedFS they stalled): the peer's figures are then left out, and
	// the mount's kept.
	deadline = time.Now().Add(300 * time.Second)
	for puts() < len(mix) {
		if time.Now().After(deadline) {
			b.Logf("rclone uploaded %d of %d files in 5 minutes: no rclone figures", puts(), len(mix))
			return f, false
		}
		time.Sleep(50 * time.Millisecond)
	}
	f.cpu = cpuSeconds(b, cmd.Process.Pid) - cpu0
	return f, true
}
