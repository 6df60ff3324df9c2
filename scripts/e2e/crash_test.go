// Crashes and restarts: a kill before upload, a wiped cache, two hosts on
// one bucket, refused starts, and Synapse's Python write pattern.

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/fs/mounttest"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
	"github.com/s3mediafs/s3mediafs/s3/s3test"
)

// TestKillBeforeUploadThenRestart: files whose close() returned, and a
// delete, survive SIGKILL of the daemon before any of it reached S3, and
// reach S3 after the restart.
func TestKillBeforeUploadThenRestart(t *testing.T) {
	client, srv, bucket := s3test.Bucket(t, "synapse/")
	proxy := s3test.NewProxy(t, srv.Endpoint)
	cacheDir, mnt := t.TempDir(), t.TempDir()
	cfg := config(t, srv, proxy.URL, bucket, cacheDir, "")

	d := start(t, cfg, mnt)
	mounttest.MustWriteLikeSynapse(t, filepath.Join(mnt, "local_content/aa/bb/doomed"), payload(1000, 0))
	eventually(t, 20*time.Second, "first upload", func() bool { _, ok := object(t, client, "local_content/aa/bb/doomed"); return ok })

	// From here on the store refuses every write and delete.
	proxy.SetFail(func(r *http.Request) int {
		if r.Method == http.MethodPut || r.Method == http.MethodDelete || r.Method == http.MethodPost {
			return http.StatusServiceUnavailable
		}
		return 0
	})
	files := map[string][]byte{}
	for i := range 5 {
		p := fmt.Sprintf("local_content/cc/dd/file%d", i)
		files[p] = payload(20_000+i*70_000, i)
		mounttest.MustWriteLikeSynapse(t, filepath.Join(mnt, p), files[p])
	}
	if err := os.Remove(filepath.Join(mnt, "local_content/aa/bb/doomed")); err != nil {
		t.Fatal(err)
	}
	d.kill()
	for p := range files {
		if _, ok := object(t, client, p); ok {
			t.Fatalf("%s reached S3 while PUTs were refused", p)
		}
	}
	if _, ok := object(t, client, "local_content/aa/bb/doomed"); !ok {
		t.Fatal("delete reached S3 while DELETEs were refused")
	}

	proxy.SetFail(nil)
	d2 := start(t, cfg, mnt)
	// The byte accounting is exact after SIGKILL, read from the index
	// without walking the cache.
	var total int64
	for _, data := range files {
		total += int64(len(data))
	}
	m := regexp.MustCompile(`msg="cache opened".* local_bytes=(\d+) dirty_bytes=(\d+)`).FindStringSubmatch(d2.logs())
	if m == nil || m[1] != strconv.FormatInt(total, 10) || m[2] != m[1] {
		t.Fatalf("accounting after SIGKILL: %v, want %d local and dirty bytes", m, total)
	}
	for p, data := range files {
		eventually(t, 30*time.Second, p+" in S3", func() bool {
			got, ok := object(t, client, p)
			return ok && bytes.Equal(got, data)
		})
	}
	eventually(t, 30*time.Second, "the owed delete", func() bool { _, ok := object(t, client, "local_content/aa/bb/doomed"); return !ok })
	if _, err := os.Stat(filepath.Join(mnt, "local_content/aa/bb/doomed")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("removed file visible after restart: %v", err)
	}
	d2.terminate(t)
}

// TestWipedCacheRestart: after a clean stop and a wiped cache dir, every
// file reads back from S3 through the mount.
func TestWipedCacheRestart(t *testing.T) {
	client, srv, bucket := s3test.Bucket(t, "synapse/")
	cacheDir, mnt := t.TempDir(), t.TempDir()
	cfg := config(t, srv, "", bucket, cacheDir, "")
	d := start(t, cfg, mnt)
	files := map[string][]byte{
		"local_content/ab/cd/one":                           payload(150_000, 1),
		"local_thumbnails/ab/cd/one/96-96-image-jpeg-scale": payload(9_000, 2),
		"remote_content/example.org/ef/gh/two":              payload(3_000_000, 3),
	}
	for p, data := range files {
		mounttest.MustWriteLikeSynapse(t, filepath.Join(mnt, p), data)
	}
	d.terminate(t) // drains
	for p := range files {
		if _, ok := object(t, client, p); !ok {
			t.Fatalf("%s not in S3 after a graceful stop", p)
		}
	}
	if err := os.RemoveAll(cacheDir); err != nil {
		t.Fatal(err)
	}
	d2 := start(t, cfg, mnt)
	for p, data := range files {
		got, err := os.ReadFile(filepath.Join(mnt, p))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s after a wiped cache: %v, %d bytes", p, err, len(got))
		}
	}
	d2.terminate(t)
}

// TestTwoHostsOneBucket: two daemons with separate caches share a bucket.
func TestTwoHostsOneBucket(t *testing.T) {
	client, srv, bucket := s3test.Bucket(t, "synapse/")
	fast := "revalidate_after: 200ms\nentry_timeout: 100ms\nattr_timeout: 100ms\nnegative_cache_ttl: 100ms\nmade_dir_trust: 500ms\n"
	mntA, mntB := t.TempDir(), t.TempDir()
	a := start(t, config(t, srv, "", bucket, t.TempDir(), fast), mntA)
	b := start(t, config(t, srv, "", bucket, t.TempDir(), fast), mntB)

	data := payload(400_000, 7)
	mounttest.MustWriteLikeSynapse(t, filepath.Join(mntA, "local_content/xx/yy/shared"), data)
	eventually(t, 20*time.Second, "upload from A", func() bool { _, ok := object(t, client, "local_content/xx/yy/shared"); return ok })
	got, err := os.ReadFile(filepath.Join(mntB, "local_content/xx/yy/shared"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("B reads A's file: %v, %d bytes", err, len(got))
	}

	// B writes, A deletes B's file; neither resurrects it.
	mounttest.MustWriteLikeSynapse(t, filepath.Join(mntB, "local_content/xx/yy/fromb"), payload(5000, 8))
	eventually(t, 20*time.Second, "upload from B", func() bool { _, ok := object(t, client, "local_content/xx/yy/fromb"); return ok })
	eventually(t, 10*time.Second, "A sees B's file", func() bool {
		_, err := os.Stat(filepath.Join(mntA, "local_content/xx/yy/fromb"))
		return err == nil
	})
	if err := os.Remove(filepath.Join(mntA, "local_content/xx/yy/fromb")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(mntA, "local_content/xx/yy/shared")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "deletes from A", func() bool {
		_, ok1 := object(t, client, "local_content/xx/yy/fromb")
		_, ok2 := object(t, client, "local_content/xx/yy/shared")
		return !ok1 && !ok2
	})
	for _, p := range []string{"local_content/xx/yy/fromb", "local_content/xx/yy/shared"} {
		eventually(t, 10*time.Second, "B sees the unlink of "+p, func() bool {
			_, err := os.Stat(filepath.Join(mntB, p))
			return errors.Is(err, os.ErrNotExist)
		})
	}
	a.terminate(t)
	b.terminate(t)
	for _, p := range []string{"local_content/xx/yy/fromb", "local_content/xx/yy/shared"} {
		if _, ok := object(t, client, p); ok {
			t.Fatalf("%s resurrected", p)
		}
	}
}

// TestStartRefusals: bad mount points, configs and buckets fail at once
// with a clear message and a non-zero exit, and leave nothing mounted.
func TestStartRefusals(t *testing.T) {
	srv := s3test.FromEnv(t)
	_, _, bucket := s3test.Bucket(t, "")
	good := config(t, srv, "", bucket, t.TempDir(), "")
	badKey := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(badKey, []byte("bucket: x\nbuckett: y\n"), 0o600)
	noBucket := config(t, srv, "", "no-such-bucket-here", t.TempDir(), "")
	noHost := config(t, srv, "http://no-such-host.invalid", bucket, t.TempDir(), "")

	mounted := t.TempDir()
	start(t, good, mounted)

	holding := t.TempDir() // a media store not imported yet
	os.MkdirAll(filepath.Join(holding, "local_content/ab/cd"), 0o755)
	os.WriteFile(filepath.Join(holding, "local_content/ab/cd/efgh"), []byte("media"), 0o644)
	cases := []struct {
		name, cfg, mnt, want string
	}{
		{"media store holding files", good, holding, "holds 1 files (5 B) that the mount would hide"},
		{"missing mount point", good, "/nonexistent/s3mediafs", "mount point"},
		{"already mounted", config(t, srv, "", bucket, t.TempDir(), ""), mounted, "already has a filesystem mounted"},
		{"unknown key", badKey, t.TempDir(), "buckett"},
		{"missing bucket", noBucket, t.TempDir(), "no-such-bucket-here"},
		{"endpoint host does not exist", noHost, t.TempDir(), "cannot use bucket"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, binary, "mount", "--config", tc.cfg, tc.mnt).CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() == 0 {
				t.Fatalf("exit: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Fatalf("message does not say %q:\n%s", tc.want, out)
			}
			if tc.mnt != mounted && isMounted(tc.mnt) {
				unmount(tc.mnt)
				t.Fatal("left a mount behind")
			}
		})
	}
}

// A store that does not answer at start (refused; 5xx) is an outage, not
// a wrong configuration: the daemon mounts, serves what it has cached,
// keeps writes, answers unknown names "absent" at once, and uploads what
// it owes once the store is back. status and the metrics say it is down.
func TestStartWithoutTheStore(t *testing.T) {
	client, srv, bucket := s3test.Bucket(t, "synapse/")
	proxy := s3test.NewProxy(t, srv.Endpoint)
	cfg := config(t, srv, proxy.URL, bucket, t.TempDir(), "")
	mnt := t.TempDir()
	d := start(t, cfg, mnt)
	cached := payload(40_000, 1)
	mounttest.MustWriteLikeSynapse(t, filepath.Join(mnt, "local_content/aa/bb/cached"), cached)
	flushed(t, cfg, 30*time.Second)
	d.stop()

	// One outage a store, to keep the run short: 503s on the first,
	// connections dropped (Faults.Down) on the second.
	outages := []func(*http.Request) int{func(*http.Request) int { return http.StatusServiceUnavailable }}
	if os.Getenv("S3MEDIAFS_TEST_STORE") == "seaweedfs" {
		outages = []func(*http.Request) int{nil}
	}
	for _, outage := range outages {
		if outage != nil {
			proxy.SetFail(outage)
		} else {
			proxy.SetFail(nil)
			proxy.SetFaults(s3test.Faults{Down: true}, 1)
		}
		d = start(t, cfg, mnt)
		if !strings.Contains(d.logs(), "does not answer; mounting without it") {
			t.Fatalf("no log line says the store is away:\n%s", d.logs())
		}
		if got, err := os.ReadFile(filepath.Join(mnt, "local_content/aa/bb/cached")); err != nil || !bytes.Equal(got, cached) {
			t.Fatalf("a cached file with the store away: %d bytes, %v", len(got), err)
		}
		startLookup := time.Now()
		if _, err := os.Stat(filepath.Join(mnt, "local_content/zz/yy/unknown")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("an unknown name with the store away: %v", err)
		}
		if took := time.Since(startLookup); took > 5*time.Second {
			t.Errorf("an unknown name took %v to answer", took)
		}
		written := payload(30_000, 2)
		mounttest.MustWriteLikeSynapse(t, filepath.Join(mnt, "local_content/cc/dd/written"), written)
		if out, _ := cli(t, "status", "--json", "--socket", socketOf(t, cfg)); !strings.Contains(out, `"store_down": true`) {
			t.Errorf("status does not say the store is down:\n%s", out)
		}
		proxy.SetFail(nil)
		proxy.SetFaults(s3test.Faults{}, 1)
		eventually(t, 30*time.Second, "the owed upload once the store is back", func() bool {
			got, ok := object(t, client, "local_content/cc/dd/written")
			return ok && bytes.Equal(got, written)
		})
		d.stop()
		client.Delete(context.Background(), "local_content/cc/dd/written")
	}
}

// TestPythonSynapsePattern runs Synapse's own file calls (os.makedirs,
// open "wb", getsize, seek/read, os.remove, shutil.rmtree, os.rmdir up the
// chain) from Python against the mount.
func TestPythonSynapsePattern(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("python3 missing under CI")
		}
		t.Skip("python3 not installed")
	}
	client, srv, bucket := s3test.Bucket(t, "synapse/")
	mnt := t.TempDir()
	d := start(t, config(t, srv, "", bucket, t.TempDir(), ""), mnt)
	script, _ := filepath.Abs("../synapse_pattern.py")
	out, err := exec.Command(py, script, mnt).CombinedOutput()
	if err != nil {
		t.Fatalf("synapse_pattern.py: %v\n%s", err, out)
	}
	t.Logf("%s", out)
	d.terminate(t)
	// What the script left must be in S3; what it removed must not.
	var keys []string
	if err := client.List(context.Background(), "", true, func(e objstore.Entry) bool {
		keys = append(keys, e.Name)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	want := strings.Fields(strings.TrimSpace(lastLine(string(out))))
	if strings.Join(keys, " ") != strings.Join(want, " ") {
		t.Fatalf("objects in S3: %v\nscript left: %v", keys, want)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// A killed daemon leaves a dead mount (ENOTCONN to every caller); the
// same mount command, started again as systemd's Restart= does, detaches
// it, says so in one log line, and serves the files again, with no person
// in the loop. A live mount is never taken for a dead one.
func TestRestartAfterACrashHealsTheMount(t *testing.T) {
	_, srv, bucket := s3test.Bucket(t, "synapse/")
	cfg := config(t, srv, "", bucket, t.TempDir(), "")
	mnt := t.TempDir()
	d := start(t, cfg, mnt)
	data := payload(25_000, 5)
	mounttest.MustWriteLikeSynapse(t, filepath.Join(mnt, "local_content/ab/cd/before"), data)
	for round := range 3 {
		d.killOnly()
		if _, err := os.Stat(filepath.Join(mnt, "local_content/ab/cd/before")); !errors.Is(err, syscall.ENOTCONN) {
			t.Fatalf("round %d: after SIGKILL: %v, want ENOTCONN (a dead mount)", round, err)
		}
		d = start(t, cfg, mnt)
		if !strings.Contains(d.logs(), "a dead s3mediafs mount was left on the mount point") {
			t.Errorf("round %d: no log line says the dead mount was detached", round)
		}
		if got, err := os.ReadFile(filepath.Join(mnt, "local_content/ab/cd/before")); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("round %d: after the restart: %d bytes, %v", round, len(got), err)
		}
		if n := strings.Count(mountTable(t), " "+mnt+" "); n != 1 {
			t.Fatalf("round %d: %d mounts at the mount point, want 1", round, n)
		}
	}
	// The live mount stays: a second daemon is refused, the first serves on.
	out, err := exec.Command(binary, "mount", "--config", config(t, srv, "", bucket, t.TempDir(), ""), mnt).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "already has a filesystem mounted") {
		t.Fatalf("a second daemon on a live mount: %v\n%s", err, out)
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "local_content/ab/cd/before")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the live mount after a refused second daemon: %v", err)
	}
	d.terminate(t)
}

func mountTable(t *testing.T) string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
