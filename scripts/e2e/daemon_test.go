// Package e2e runs the real s3mediafs binary as a subprocess against the
// local S3 server: crash, restart and multi-host tests. The test process
// never serves a mount itself, so it cannot deadlock on one.
package e2e

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/fs/mounttest"
	"github.com/s3mediafs/s3mediafs/s3"
	"github.com/s3mediafs/s3mediafs/s3/s3test"
)

var binary string

func TestMain(m *testing.M) {
	if os.Getenv("S3MEDIAFS_LOAD_MNT") != "" {
		os.Exit(m.Run()) // a load of restart_test.go: needs no binary
	}
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "s3mediafs-e2e-bin")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		// Temporary directories live below dir, so that each test's leak
		// check (checkLeaks) counts this run's mounts only, not those of
		// packages tested at the same time.
		os.Setenv("TMPDIR", dir)
		binary = filepath.Join(dir, "s3mediafs")
		// Tests run the daemon under the race detector; benchmarks time
		// the binary an operator runs, built without it.
		args := []string{"build", "-race", "-o", binary, "github.com/s3mediafs/s3mediafs/cmd/s3mediafs"}
		flag.Parse()
		if f := flag.Lookup("test.bench"); f != nil && f.Value.String() != "" {
			args = slices.Delete(args, 1, 2)
		}
		build := exec.Command("go", args...)
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build s3mediafs:", err)
			return 1
		}
		return m.Run()
	}())
}

// checkLeaks makes t fail if it leaves a mount, a daemon of the binary
// under test, a descriptor or a goroutine behind (mounttest.CheckLeaks).
// The helpers that configure or start a daemon call it, first thing.
func checkLeaks(t testing.TB) {
	t.Helper()
	mounttest.CheckLeaks(t, filepath.Dir(binary), binary)
}

// daemon is one running s3mediafs mount process.
type daemon struct {
	t      testing.TB
	mnt    string
	cmd    *exec.Cmd
	logMu  sync.Mutex
	log    bytes.Buffer
	exited chan struct{}
	err    error
	once   sync.Once
}

func (d *daemon) logs() string {
	d.logMu.Lock()
	defer d.logMu.Unlock()
	return d.log.String()
}

// config writes a daemon configuration and returns its path.
func config(t testing.TB, srv s3test.Server, endpoint, bucket, cacheDir string, extra string) string {
	t.Helper()
	checkLeaks(t)
	if endpoint == "" {
		endpoint = srv.Endpoint
	}
	p := filepath.Join(t.TempDir(), "s3mediafs.yaml")
	body := fmt.Sprintf(`control_socket: %s
metrics_address: 127.0.0.1:0
bucket: %s
prefix: "synapse/"
endpoint_url: %s
force_path_style: true
access_key_id: %s
secret_access_key: %s
cache_dir: %s
store_timeout: 5s
drain_timeout: 10s
%s`, filepath.Join(t.TempDir(), "control.sock"), bucket, endpoint, srv.AccessKey, srv.SecretKey, cacheDir, extra)
	if !strings.Contains(extra, "log_level:") {
		body += "log_level: debug\n"
	}
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startThroughProxy configures a daemon for bucket, extra added to its
// configuration, with every store request passing a recording proxy, and
// starts it on a fresh mountpoint (d.mnt).
func startThroughProxy(t testing.TB, srv s3test.Server, bucket, extra string) (proxy *s3test.Proxy, cfg string, d *daemon) {
	t.Helper()
	proxy = s3test.NewProxy(t, srv.Endpoint)
	cfg = config(t, srv, proxy.URL, bucket, t.TempDir(), extra)
	return proxy, cfg, start(t, cfg, t.TempDir())
}

// start runs the daemon and waits until the mount serves. The daemon is
// stopped and the mount removed in t.Cleanup, whatever happens.
func start(t testing.TB, cfg, mnt string) *daemon {
	t.Helper()
	return startEnv(t, cfg, mnt, nil)
}

// startEnv is start with extra environment variables for the daemon.
func startEnv(t testing.TB, cfg, mnt string, env []string) *daemon {
	t.Helper()
	checkLeaks(t)
	d := &daemon{t: t, mnt: mnt, exited: make(chan struct{})}
	// The daemon says on --ready-fd when the mount serves ("ok") or why
	// it cannot ("error: …"); its log is kept for failures.
	readyR, readyW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command(binary, "mount", "--ready-fd", "3", "--config", cfg, mnt)
	d.cmd.ExtraFiles = []*os.File{readyW}
	d.cmd.Env = append(os.Environ(), env...)
	pr, pw := io.Pipe()
	d.cmd.Stdout, d.cmd.Stderr = pw, pw
	err = d.cmd.Start()
	readyW.Close()
	if err != nil {
		readyR.Close()
		t.Fatal(err)
	}
	readiness := make(chan string, 1)
	go func() {
		defer readyR.Close()
		line, _ := bufio.NewReader(readyR).ReadString('\n')
		readiness <- strings.TrimSpace(line)
	}()
	// S3MEDIAFS_E2E_LOG names a file that collects every daemon's log,
	// for reading a failed soak after the fact.
	var keep io.Writer = io.Discard
	if p := os.Getenv("S3MEDIAFS_E2E_LOG"); p != "" {
		if f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err == nil {
			defer func() { go func() { <-d.exited; f.Close() }() }()
			keep = f
		}
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			d.logMu.Lock()
			d.log.WriteString(sc.Text() + "\n")
			fmt.Fprintln(keep, sc.Text())
			d.logMu.Unlock()
		}
	}()
	go func() {
		d.err = d.cmd.Wait()
		pw.Close()
		close(d.exited)
	}()
	t.Cleanup(func() { d.stop() })
	select {
	case line := <-readiness:
		if line != "ok" {
			<-d.exited
			t.Fatalf("daemon did not mount: %q (exit: %v)\n%s", line, d.err, d.logs())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("daemon did not mount in 30s\n%s", d.logs())
	}
	return d
}

// terminateProcess sends p SIGTERM unless it has exited already, and
// SIGKILL if it has not exited 30 s later; it returns once it has.
func terminateProcess(p *os.Process, exited <-chan struct{}) {
	select {
	case <-exited:
	default:
		p.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			p.Kill()
			<-exited
		}
	}
}

// stop ends the daemon gracefully (SIGTERM) if it still runs and makes sure
// nothing stays mounted.
func (d *daemon) stop() { d.once.Do(d.stopOnce) }

func (d *daemon) stopOnce() {
	terminateProcess(d.cmd.Process, d.exited)
	unmount(d.mnt)
	checkNoSecrets(d.t, "daemon log", d.logs())
	if d.t.Failed() {
		d.t.Logf("daemon log for %s:\n%s", d.mnt, d.logs())
	}
}

// Secrets the tests configure; none may appear in any log or output.
const (
	testSSECKey      = "0123456789abcdefFEDCBA9876543210"
	testSessionToken = "test-session-token-do-not-log"
)

func checkNoSecrets(t testing.TB, what, text string) {
	t.Helper()
	secrets := []string{testSSECKey, testSessionToken}
	if s := os.Getenv("S3MEDIAFS_TEST_SECRET_KEY"); s != "" {
		secrets = append(secrets, s)
	}
	for _, s := range secrets {
		if strings.Contains(text, s) {
			t.Errorf("%s contains a secret (%.4s…)", what, s)
		}
	}
}

// kill is SIGKILL: no unmount, no drain; the dead mount is then removed.
func (d *daemon) kill() {
	d.killOnly()
	unmount(d.mnt)
}

// killOnly is SIGKILL leaving the dead mount in place: writers still
// running get ENOTCONN instead of writing into the bare directory below.
func (d *daemon) killOnly() {
	d.cmd.Process.Kill()
	<-d.exited
}

// terminate sends SIGTERM and requires a clean exit.
func (d *daemon) terminate(t testing.TB) {
	t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("daemon did not stop in 30s\n%s", d.logs())
	}
	if d.err != nil {
		t.Fatalf("daemon exit: %v\n%s", d.err, d.logs())
	}
	if isMounted(d.mnt) {
		t.Fatal("still mounted after a graceful stop")
	}
}

func isMounted(mnt string) bool {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == mnt {
			return true
		}
	}
	return false
}

func unmount(mnt string) {
	for i := 0; i < 50 && isMounted(mnt); i++ {
		if err := syscall.Unmount(mnt, 0); err != nil {
			syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
	}
}

// flushed waits, through `s3mediafs flush`, until the daemon serving cfg
// has everything written so far in S3, and fails the test if that takes
// longer than timeout.
func flushed(t testing.TB, cfg string, timeout time.Duration) {
	t.Helper()
	if out, code := cli(t, "flush", "--timeout", timeout.String(), "--socket", socketOf(t, cfg)); code != 0 {
		t.Fatalf("flush: %s", out)
	}
}

func payload(n int, seed int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*31 + seed*17 + i>>9)
	}
	return b
}

func object(t testing.TB, c *s3.Client, key string) ([]byte, bool) {
	t.Helper()
	return s3test.Object(t, c, key)
}

// eventually polls cond for up to d.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// opsOf counts the requests the proxy saw, by S3 operation.
func opsOf(p *s3test.Proxy) map[string]int {
	ops := map[string]int{}
	for _, r := range p.Requests() {
		ops[r.Op()]++
	}
	return ops
}
