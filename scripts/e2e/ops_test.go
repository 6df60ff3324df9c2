// Operations: status, flush and metrics; SIGTERM's drain; systemd
// notification; the mount helper and fstab; secrets never shown; an
// external unmount while the store fails.

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/s3mediafs/s3mediafs/fs/mounttest"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/s3mediafs/s3mediafs/s3/s3test"
)

// socketOf reads the control socket path from a daemon config.
func socketOf(t testing.TB, cfg string) string {
	t.Helper()
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^control_socket: (.+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("no control_socket in config")
	}
	return string(m[1])
}

func cli(t testing.TB, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, args...).CombinedOutput()
	checkNoSecrets(t, "output of "+args[0], string(out))
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	}
	t.Fatalf("%v: %v", args, err)
	return "", -1
}

// TestStatusFlushMetrics: status and flush over the control socket and the
// metrics page of a live mount, while S3 refuses uploads and after.
func TestStatusFlushMetrics(t *testing.T) {
	client, srv, bucket := s3test.Bucket(t, "synapse/")
	proxy := s3test.NewProxy(t, srv.Endpoint)
	proxy.SetFail(func(r *http.Request) int {
		if r.Method == http.MethodPut {
			return http.StatusServiceUnavailable
		}
		return 0
	})
	cfg := config(t, srv, proxy.URL, bucket, t.TempDir(), "")
	socket := socketOf(t, cfg)
	mnt := t.TempDir()
	d := start(t, cfg, mnt)
	for i := range 3 {
		mounttest.MustWriteLikeSynapse(t, filepath.Join(mnt, fmt.Sprintf("local_content/aa/bb/f%d", i)), payload(10_000, i))
	}
	if fi, err := os.Stat(socket); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("control socket: %v %v, want mode 0600", fi, err)
	}
	var st map[string]any
	eventually(t, 20*time.Second, "status to show the refused uploads", func() bool {
		out, code := cli(t, "status", "--json", "--socket", socket)
		st = nil
		if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
			t.Fatalf("status --json: %d %s", code, out)
		}
		return st["store_errors_transient"].(float64) > 0
	})
	if st["dirty_files"].(float64) != 3 || st["dirty_bytes"].(float64) != 30_000 || st["mountpoint"] != mnt {
		t.Fatalf("status: %v", st)
	}
	// This kernel (≥ 6.9, as root) gives passthrough; status says so.
	if st["io_mode"] != "passthrough" {
		t.Errorf("status io_mode = %v, want passthrough", st["io_mode"])
	}
	if st["store_errors_transient"].(float64) == 0 || !strings.Contains(st["last_store_error"].(string), "ServiceUnavailable") {
		t.Fatalf("status does not show the S3 errors: %v", st)
	}
	human, code := cli(t, "status", "--socket", socket)
	if code != 0 || !strings.Contains(human, "not yet in S3:  3 files") {
		t.Fatalf("status: %d\n%s", code, human)
	}
	if out, code := cli(t, "flush", "--timeout", "1s", "--socket", socket); code != 1 || !strings.Contains(out, "3 files still owed") {
		t.Fatalf("flush while S3 refuses: %d %s", code, out)
	}

	proxy.SetFail(nil)
	if out, code := cli(t, "flush", "--timeout", "60s", "--socket", socket); code != 0 {
		t.Fatalf("flush: %d %s", code, out)
	}
	for i := range 3 {
		if _, ok := object(t, client, fmt.Sprintf("local_content/aa/bb/f%d", i)); !ok {
			t.Fatalf("f%d not in S3 after a successful flush", i)
		}
	}

	// The metrics page, parsed as Prometheus parses it.
	families := metricsOf(t, d)
	for _, name := range []string{
		"s3mediafs_fuse_operation_duration_seconds", "s3mediafs_s3_request_duration_seconds",
		"s3mediafs_cache_hits_total", "s3mediafs_cache_misses_total", "s3mediafs_cache_evictions_total",
		"s3mediafs_uploaded_bytes_total", "s3mediafs_downloaded_bytes_total", "s3mediafs_upload_queue_depth",
		"s3mediafs_upload_queue_oldest_seconds", "s3mediafs_dirty_bytes", "s3mediafs_upload_errors_total",
	} {
		if families[name] == nil {
			t.Errorf("metrics lack %s", name)
		}
	}
	outcomes := map[string]bool{}
	for _, mt := range families["s3mediafs_s3_request_duration_seconds"].GetMetric() {
		for _, l := range mt.GetLabel() {
			if l.GetName() == "outcome" {
				outcomes[l.GetValue()] = true
			}
		}
	}
	if !outcomes["ok"] || !outcomes["transient"] {
		t.Errorf("S3 request outcomes seen: %v, want ok and transient", outcomes)
	}
	d.terminate(t)
	if _, err := os.Stat(socket); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("control socket left after stop: %v", err)
	}
}

// TestSIGTERMDrainsPendingUploads: a stop with uploads still owed waits
// for them (within drain_timeout) before exiting 0.
func TestSIGTERMDrainsPendingUploads(t *testing.T) {
	client, srv, bucket := s3test.Bucket(t, "synapse/")
	proxy := s3test.NewProxy(t, srv.Endpoint)
	proxy.SetFail(func(r *http.Request) int {
		if r.Method == http.MethodPut {
			time.Sleep(300 * time.Millisecond) // a slow store
		}
		return 0
	})
	cfg := config(t, srv, proxy.URL, bucket, t.TempDir(), "upload_concurrency: 2\n")
	mnt := t.TempDir()
	d := start(t, cfg, mnt)
	for i := range 6 {
		mounttest.MustWriteLikeSynapse(t, filepath.Join(mnt, fmt.Sprintf("local_content/cc/dd/f%d", i)), payload(5000, i))
	}
	d.terminate(t)
	for i := range 6 {
		if _, ok := object(t, client, fmt.Sprintf("local_content/cc/dd/f%d", i)); !ok {
			t.Fatalf("f%d not drained before exit", i)
		}
	}
	if !strings.Contains(d.logs(), "all uploads done") {
		t.Fatal("no drain report in the log")
	}
}

// TestSystemdNotify: the mount's descriptors for the store, READY=1 once
// the mount serves, STATUS= lines, and STOPPING=1, over a NOTIFY_SOCKET
// as systemd provides it.
func TestSystemdNotify(t *testing.T) {
	_, srv, bucket := s3test.Bucket(t, "")
	sockPath := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msgs := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	mnt := t.TempDir()
	d := startEnv(t, config(t, srv, "", bucket, t.TempDir(), ""), mnt, []string{"NOTIFY_SOCKET=" + sockPath})
	// The mount's connection goes to the file-descriptor store first (a
	// crash from then on leaves it to the next start), then READY=1.
	stored := map[string]bool{}
	for ready := false; !ready; {
		select {
		case m := <-msgs:
			if name, ok := strings.CutPrefix(m, "FDSTORE=1\nFDPOLL=0\nFDNAME="); ok {
				stored[name] = true
				continue
			}
			if !strings.Contains(m, "READY=1") || !strings.Contains(m, "STATUS=") {
				t.Fatalf("first notification after the descriptors: %q", m)
			}
			ready = true
		case <-time.After(10 * time.Second):
			t.Fatal("no READY=1")
		}
	}
	if !stored["s3mediafs-fuse"] || !stored["s3mediafs-state"] {
		t.Errorf("descriptors stored before READY=1: %v", stored)
	}
	if !isMounted(mnt) {
		t.Fatal("READY=1 before the mount serves")
	}
	d.cmd.Process.Signal(os.Interrupt)
	deadline := time.After(20 * time.Second)
	for {
		select {
		case m := <-msgs:
			if strings.Contains(m, "STOPPING=1") {
				<-d.exited
				return
			}
		case <-deadline:
			t.Fatal("no STOPPING=1")
		}
	}
}

// installHelper puts the binary at /sbin/mount.s3mediafs, where mount(8)
// looks for the helper of type s3mediafs, for the test; it skips the test
// rather than replace an installed helper.
func installHelper(t *testing.T) {
	t.Helper()
	helper := "/sbin/mount.s3mediafs"
	if _, err := os.Lstat(helper); err == nil {
		t.Skipf("%s exists already; not replacing an installed helper", helper)
	}
	if err := os.Symlink(binary, helper); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(helper) })
}

// TestMountHelperAndFstab: mount -t s3mediafs through the helper, with
// fstab options; umount; and systemd's fstab generator on the documented
// fstab line.
func TestMountHelperAndFstab(t *testing.T) {
	installHelper(t)
	client, srv, bucket := s3test.Bucket(t, "synapse/")
	cfg := config(t, srv, "", bucket, t.TempDir(), "")
	socket := socketOf(t, cfg)
	mnt := t.TempDir()
	t.Cleanup(func() { unmount(mnt) })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	logFile := filepath.Join(t.TempDir(), "daemon.log")
	mount := exec.CommandContext(ctx, "mount", "-t", "s3mediafs", cfg, mnt,
		"-o", "_netdev,nofail,x-systemd.requires=network-online.target,allow_other,upload_concurrency=3,log_file="+logFile+
			",secret_access_key="+srv.SecretKey)
	mount.WaitDelay = 5 * time.Second // the daemon must not hold our pipes
	out, err := mount.CombinedOutput()
	if err != nil {
		t.Fatalf("mount -t s3mediafs: %v\n%s", err, out)
	}
	// The helper returned: the mount serves now, not later.
	if !isMounted(mnt) {
		t.Fatal("helper returned before the mount was there")
	}
	// The detached daemon got its configuration privately: no local user
	// can read the secret in its command line.
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range cmdlines {
		if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), srv.SecretKey) {
			t.Fatalf("the secret is in %s: %q", f, bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		}
	}
	mounttest.MustWriteLikeSynapse(t, filepath.Join(mnt, "local_content/ee/ff/viahelper"), payload(4000, 9))
	if out, code := cli(t, "flush", "--timeout", "30s", "--socket", socket); code != 0 {
		t.Fatalf("flush: %s", out)
	}
	if _, ok := object(t, client, "local_content/ee/ff/viahelper"); !ok {
		t.Fatal("file written through the helper's mount not in S3")
	}
	if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v %s", err, out)
	}
	eventually(t, 30*time.Second, "the daemon to exit", func() bool {
		_, err := os.Stat(socket)
		return errors.Is(err, os.ErrNotExist)
	})
	logs, _ := os.ReadFile(logFile)
	if !strings.Contains(string(logs), "msg=mounted") || !strings.Contains(string(logs), "all uploads done") {
		t.Fatalf("daemon log file:\n%s", logs)
	}
	checkNoSecrets(t, "daemon log file", string(logs))
	// Bad options fail the mount with the reason.
	bad := exec.Command("mount", "-t", "s3mediafs", cfg, mnt, "-o", "cache_max_size=lots")
	bad.WaitDelay = 5 * time.Second
	out, err = bad.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "is not a size") {
		t.Fatalf("mount with a bad option: %v %s", err, out)
	}
	// A media store still holding files is refused the same way.
	os.WriteFile(filepath.Join(mnt, "not-imported"), []byte("media"), 0o644)
	held := exec.Command("mount", "-t", "s3mediafs", cfg, mnt)
	held.WaitDelay = 5 * time.Second
	out, err = held.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "s3mediafs import") || isMounted(mnt) {
		t.Fatalf("mount over a media store holding files: %v %s", err, out)
	}
	os.Remove(filepath.Join(mnt, "not-imported"))

	gen := "/usr/lib/systemd/system-generators/systemd-fstab-generator"
	if _, err := os.Stat(gen); err != nil {
		t.Logf("no %s here; fstab generator check skipped", gen)
		return
	}
	dir := t.TempDir()
	fstab := filepath.Join(dir, "fstab")
	os.WriteFile(fstab, []byte("/etc/s3mediafs.yaml /var/lib/synapse/media_store s3mediafs _netdev,nofail,allow_other 0 0\n"), 0o644)
	units := filepath.Join(dir, "units")
	os.Mkdir(units, 0o755)
	cmd := exec.Command(gen, units, units, units)
	cmd.Env = append(os.Environ(), "SYSTEMD_FSTAB="+fstab)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("fstab generator: %v %s", err, out)
	}
	unit, err := os.ReadFile(filepath.Join(units, "var-lib-synapse-media_store.mount"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"What=/etc/s3mediafs.yaml", "Where=/var/lib/synapse/media_store", "Type=s3mediafs", "Options=_netdev,nofail,allow_other"} {
		if !bytes.Contains(unit, []byte(want)) {
			t.Fatalf("generated unit lacks %s:\n%s", want, unit)
		}
	}
	if _, err := os.Lstat(filepath.Join(units, "remote-fs.target.wants", "var-lib-synapse-media_store.mount")); err != nil {
		t.Fatalf("_netdev mount not wanted by remote-fs.target: %v", err)
	}
}

// TestSecretsNeverShown: a start that fails on credentials reports the
// failure without the secret key, session token or SSE-C key.
func TestSecretsNeverShown(t *testing.T) {
	_, srv, bucket := s3test.Bucket(t, "")
	cfg := config(t, srv, "", bucket, t.TempDir(),
		"session_token: "+testSessionToken+"\nsse_customer_key: "+testSSECKey+"\nstore_timeout: 3s\n")
	out, code := cli(t, "mount", "--config", cfg, t.TempDir())
	if code == 0 {
		t.Skip("the test server accepted a made-up session token")
	}
	checkNoSecrets(t, "failed start", out)
	// And through a live mount's status.
	mnt := t.TempDir()
	good := config(t, srv, "", bucket, t.TempDir(), "sse_customer_key: "+testSSECKey+"\n")
	start(t, good, mnt)
	status, _ := cli(t, "status", "--json", "--socket", socketOf(t, good))
	checkNoSecrets(t, "status", status)
}

// TestExternalUnmountWhileStoreFails: a daemon started by mount(8) whose
// mount is removed from outside while S3 answers every upload with 500
// drains for drain_timeout, then exits, keeping the owed uploads.
func TestExternalUnmountWhileStoreFails(t *testing.T) {
	installHelper(t)
	_, srv, bucket := s3test.Bucket(t, "synapse/")
	proxy := s3test.NewProxy(t, srv.Endpoint)
	cfg := config(t, srv, proxy.URL, bucket, t.TempDir(), "")
	socket := socketOf(t, cfg)
	mnt := t.TempDir()
	t.Cleanup(func() { unmount(mnt) })
	mount := exec.Command("mount", "-t", "s3mediafs", cfg, mnt, "-o", "log_file="+filepath.Join(t.TempDir(), "d.log"))
	mount.WaitDelay = 5 * time.Second
	if out, err := mount.CombinedOutput(); err != nil {
		t.Fatalf("mount -t s3mediafs: %v\n%s", err, out)
	}
	proxy.SetFail(func(r *http.Request) int {
		if r.Method == http.MethodPut || r.Method == http.MethodPost {
			return http.StatusInternalServerError
		}
		return 0
	})
	mounttest.MustWriteLikeSynapse(t, filepath.Join(mnt, "local_content/ab/cd/owed"), payload(3000, 1))
	time.Sleep(500 * time.Millisecond) // an upload has failed by now
	if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v %s", err, out)
	}
	// drain_timeout is 10s in these tests.
	eventually(t, 40*time.Second, "the daemon to exit", func() bool {
		_, err := os.Stat(socket)
		return errors.Is(err, os.ErrNotExist)
	})
}

// metricsOf reads the daemon's metrics page (its URL is in its log) and
// parses it as Prometheus does.
func metricsOf(t testing.TB, d *daemon) map[string]*dto.MetricFamily {
	t.Helper()
	// The log is copied from the daemon's stderr as it comes: the line
	// may arrive after the mount already serves.
	var m []string
	eventually(t, 10*time.Second, "the metrics URL in the daemon's log", func() bool {
		m = regexp.MustCompile(`msg=metrics url=(\S+)`).FindStringSubmatch(d.logs())
		return m != nil
	})
	resp, err := http.Get(m[1])
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("metrics page does not parse: %v", err)
	}
	return families
}
