// A crash, a restart and an upgrade of the daemon under a Synapse-like
// load: the mount stays, the load sees a stall and no failure, and
// nothing acknowledged is lost.

package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/s3mediafs/s3mediafs/fs/mounttest"
	"github.com/s3mediafs/s3mediafs/s3"
	"github.com/s3mediafs/s3mediafs/s3/s3test"
)

// restartLoad writes a file the way Synapse does and reads back an
// earlier one, every 10 ms, and records each operation that failed and
// the longest any took.
type restartLoad struct {
	mnt  string
	stop chan struct{}
	done chan struct{}
	once sync.Once

	mu       sync.Mutex
	ops      int
	failures []string
	longest  time.Duration
	written  map[string][]byte
	seeds    map[string]int
}

func startLoad(t *testing.T, mnt string) *restartLoad {
	l := &restartLoad{mnt: mnt, stop: make(chan struct{}), done: make(chan struct{}), written: map[string][]byte{}, seeds: map[string]int{}}
	go l.run()
	t.Cleanup(l.halt)
	return l
}

func (l *restartLoad) halt() {
	l.once.Do(func() { close(l.stop) })
	<-l.done
}

func loadPayload(i int) []byte { return payload(20_000+i%3000, i) }

func (l *restartLoad) run() {
	defer close(l.done)
	var names []string
	for i := 0; ; i++ {
		select {
		case <-l.stop:
			return
		case <-time.After(10 * time.Millisecond):
		}
		name := fmt.Sprintf("local_content/%02x/%02x/load%05d", i%7, i%5, i)
		data := loadPayload(i)
		l.op("write "+name, func() error { return mounttest.WriteLikeSynapse(filepath.Join(l.mnt, name), data) }, func() {
			l.written[name] = data
			l.seeds[name] = i
			names = append(names, name)
		})
		if len(names) > 0 {
			old := names[(i*7919)%len(names)]
			l.op("read "+old, func() error {
				got, err := os.ReadFile(filepath.Join(l.mnt, old))
				if err == nil && !bytes.Equal(got, l.wrote(old)) {
					err = errors.New("bytes differ")
				}
				return err
			}, nil)
		}
	}
}

func (l *restartLoad) wrote(name string) []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.written[name]
}

func (l *restartLoad) op(what string, do func() error, ok func()) {
	start := time.Now()
	err := do()
	took := time.Since(start)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops++
	l.longest = max(l.longest, took)
	if err != nil {
		l.failures = append(l.failures, fmt.Sprintf("%s: %v", what, err))
		return
	}
	if ok != nil {
		ok()
	}
}

// finish stops the load and fails t for any failed operation; it returns
// the figures to report.
func (l *restartLoad) finish(t *testing.T, what string) string {
	t.Helper()
	l.halt()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.report(t, what)
}

// checkAllRead reads back every file the load was told was written.
func (l *restartLoad) checkAllRead(t *testing.T) {
	t.Helper()
	for name, data := range l.written {
		if got, err := os.ReadFile(filepath.Join(l.mnt, name)); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s lost: %d bytes, %v", name, len(got), err)
		}
	}
}

// ioModes are the two ways cached files are served: by the kernel
// (passthrough) and by the daemon; each carries its configuration line.
var ioModes = []struct {
	name  string
	extra string
}{{"passthrough", ""}, {"daemon", "passthrough: false\n"}}

// otherBuild builds the binary again as another release would be, for an
// upgrade.
func otherBuild(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "s3mediafs-next")
	out, err := exec.Command("go", "build", "-race", "-ldflags", "-X main.version=9.9.9-upgrade", "-o", p,
		"github.com/s3mediafs/s3mediafs/cmd/s3mediafs").CombinedOutput()
	if err != nil {
		t.Fatalf("build the next release: %v\n%s", err, out)
	}
	return p
}

// An upgrade: the same mount command, from another build, started while
// the old daemon serves, takes the mount over; the old one exits 0; the
// load goes on without a failure; every file is there, and in the store.
func TestUpgradeUnderLoad(t *testing.T) {
	next := otherBuild(t)
	for _, mode := range ioModes {
		t.Run(mode.name, func(t *testing.T) {
			client, srv, bucket := s3test.Bucket(t, "synapse/")
			cfg := config(t, srv, "", bucket, t.TempDir(), mode.extra)
			mnt := t.TempDir()
			old := start(t, cfg, mnt)
			// A second host on the same bucket, serving all along.
			otherMnt := t.TempDir()
			other := start(t, config(t, srv, "", bucket, t.TempDir(), mode.extra), otherMnt)
			l := startLoad(t, mnt)
			time.Sleep(time.Second)
			// A file held open across the upgrade, as a download would.
			held, err := os.Open(filepath.Join(mnt, anyFile(t, mnt)))
			if err != nil {
				t.Fatal(err)
			}
			d := startBinary(t, next, cfg, mnt, nil)
			select {
			case <-old.exited:
				if old.err != nil {
					t.Fatalf("the old daemon after handing over: %v\n%s", old.err, old.logs())
				}
			case <-time.After(60 * time.Second):
				t.Fatalf("the old daemon did not exit after the takeover\n%s", old.logs())
			}
			if !strings.Contains(old.logs(), "handed the mount over to the new daemon") ||
				!strings.Contains(d.logs(), "serving the live mount handed over") {
				t.Fatalf("no handover in the logs\nold:\n%s\nnew:\n%s", old.logs(), d.logs())
			}
			time.Sleep(time.Second)
			if _, err := io.ReadAll(held); err != nil {
				t.Errorf("a file open across the upgrade: %v", err)
			}
			held.Close()
			// Another open of that file while the first was open through
			// the old daemon's passthrough registration.
			time.Sleep(500 * time.Millisecond)
			t.Log(l.finish(t, "upgrade ("+mode.name+")"))
			l.checkAllRead(t)
			out, _ := cli(t, "status", "--socket", socketOf(t, cfg))
			if !strings.Contains(out, "9.9.9-upgrade") {
				t.Errorf("status after the upgrade does not name the new build:\n%s", out)
			}
			flushed(t, cfg, time.Minute)
			for name, data := range l.written {
				if got, ok := object(t, client, name); !ok || !bytes.Equal(got, data) {
					t.Fatalf("%s not in the store intact", name)
				}
				if got, err := os.ReadFile(filepath.Join(otherMnt, name)); err != nil || !bytes.Equal(got, data) {
					t.Fatalf("%s through the second host: %d bytes, %v", name, len(got), err)
				}
			}
			d.terminate(t)
			other.terminate(t)
		})
	}
}

// anyFile is a file the load wrote under mnt.
func anyFile(t *testing.T, mnt string) string {
	t.Helper()
	var found string
	eventually(t, 30*time.Second, "a file written by the load", func() bool {
		filepath.WalkDir(mnt, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() && found == "" {
				found, _ = filepath.Rel(mnt, p)
				return filepath.SkipAll
			}
			return nil
		})
		return found != ""
	})
	return found
}

// startBinary is start with another build of the binary.
func startBinary(t *testing.T, bin, cfg, mnt string, env []string) *daemon {
	t.Helper()
	saved := binary
	binary = bin
	defer func() { binary = saved }()
	return startEnv(t, cfg, mnt, env)
}

// fakeSystemd runs the daemon as a unit with Type=notify,
// FileDescriptorStoreMax= and Restart=on-failure (RestartSec=1s) would:
// the daemon's FDSTORE=1 descriptors are kept, and passed to the next
// start in LISTEN_FDS.
type fakeSystemd struct {
	t        *testing.T
	cfg, mnt string
	sock     *net.UnixConn
	path     string

	mu     sync.Mutex
	store  map[string]*os.File
	ready  chan struct{}
	cmd    *exec.Cmd
	exited chan struct{}
	log    bytes.Buffer
}

func newFakeSystemd(t *testing.T, cfg, mnt string) *fakeSystemd {
	s := &fakeSystemd{t: t, cfg: cfg, mnt: mnt, store: map[string]*os.File{}, path: filepath.Join(t.TempDir(), "notify")}
	var err error
	s.sock, err = net.ListenUnixgram("unixgram", &net.UnixAddr{Name: s.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	go s.listen()
	t.Cleanup(func() {
		s.stop()
		s.sock.Close()
		s.mu.Lock()
		for _, f := range s.store {
			f.Close()
		}
		s.mu.Unlock()
		unmount(mnt)
		if t.Failed() {
			t.Logf("daemon log:\n%s", s.logs())
		}
	})
	return s
}

func (s *fakeSystemd) logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

func (s *fakeSystemd) listen() {
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(16*4))
	for {
		n, oobn, _, _, err := s.sock.ReadMsgUnix(buf, oob)
		if err != nil {
			return
		}
		msg := string(buf[:n])
		var fds []int
		if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, m := range msgs {
				if r, err := unix.ParseUnixRights(&m); err == nil {
					fds = append(fds, r...)
				}
			}
		}
		name := ""
		for _, line := range strings.Split(msg, "\n") {
			if v, ok := strings.CutPrefix(line, "FDNAME="); ok {
				name = v
			}
		}
		s.mu.Lock()
		switch {
		case strings.Contains(msg, "FDSTORE=1") && len(fds) > 0:
			if old := s.store[name]; old != nil {
				old.Close()
			}
			s.store[name] = os.NewFile(uintptr(fds[0]), name)
			for _, fd := range fds[1:] {
				unix.Close(fd)
			}
		case strings.Contains(msg, "FDSTOREREMOVE=1"):
			if old := s.store[name]; old != nil {
				old.Close()
				delete(s.store, name)
			}
		default:
			for _, fd := range fds {
				unix.Close(fd)
			}
		}
		if strings.Contains(msg, "READY=1") && s.ready != nil {
			close(s.ready)
			s.ready = nil
		}
		s.mu.Unlock()
	}
}

// mountUnderSystemd mounts a new bucket, configured with extra, as the
// unit of a fake systemd would, and returns the bucket's client, the
// configuration, the mount point and the unit.
func mountUnderSystemd(t *testing.T, extra string) (*s3.Client, string, string, *fakeSystemd) {
	t.Helper()
	client, srv, bucket := s3test.Bucket(t, "synapse/")
	cfg := config(t, srv, "", bucket, t.TempDir(), extra)
	mnt := t.TempDir()
	checkLeaks(t)
	sd := newFakeSystemd(t, cfg, mnt)
	sd.start()
	return client, cfg, mnt, sd
}

// start runs the unit's ExecStart= with the store, and waits for READY=1.
func (s *fakeSystemd) start() {
	s.t.Helper()
	ready := make(chan struct{})
	s.mu.Lock()
	s.ready = ready
	// As systemd does: LISTEN_PID is the daemon's own, which only the
	// started process knows; sh execs the binary in its place.
	cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ exec "$0" "$@"`, binary, "mount", "--config", s.cfg, s.mnt)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+s.path, "FDSTORE=16")
	var names []string
	for _, name := range []string{"s3mediafs-fuse", "s3mediafs-state"} {
		if f := s.store[name]; f != nil {
			names = append(names, name)
			cmd.ExtraFiles = append(cmd.ExtraFiles, f)
		}
	}
	if len(names) > 0 {
		cmd.Env = append(cmd.Env, fmt.Sprintf("LISTEN_FDS=%d", len(names)), "LISTEN_FDNAMES="+strings.Join(names, ":"))
	}
	w := &lockedWriter{mu: &s.mu, b: &s.log}
	cmd.Stdout, cmd.Stderr = w, w
	s.mu.Unlock()
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	select {
	case <-ready:
	case <-exited:
		s.t.Fatalf("the daemon exited before READY=1\n%s", s.logs())
	case <-time.After(60 * time.Second):
		cmd.Process.Signal(syscall.SIGQUIT) // its goroutines, to the log
		time.Sleep(2 * time.Second)
		s.t.Fatalf("no READY=1 in 60s\n%s", s.logs())
	}
}

// crash is SIGKILL, then the unit's restart a second later.
func (s *fakeSystemd) crash() {
	s.t.Helper()
	s.cmd.Process.Kill()
	<-s.exited
	time.Sleep(time.Second)
	s.start()
}

func (s *fakeSystemd) stop() {
	if s.cmd == nil {
		return
	}
	terminateProcess(s.cmd.Process, s.exited)
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// loadReport is what a load in a process of its own tells the test.
type loadReport struct {
	Ops      int
	Failures []string
	Longest  time.Duration
	Seeds    map[string]int
}

// startLoadProcess runs the load in a process of its own: the test forks
// the daemon, and a fork of a process with files of the mount open would
// close them at exec, asking the daemon it is starting for a FLUSH.
func startLoadProcess(t *testing.T, mnt string) (finish func() *restartLoad) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLoadHelper$")
	cmd.Env = append(os.Environ(), "S3MEDIAFS_LOAD_MNT="+mnt, "S3MEDIAFS_LOAD_DIR="+dir)
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop := func() {
		os.WriteFile(filepath.Join(dir, "stop"), nil, 0o600)
		select {
		case <-exited:
		case <-time.After(2 * time.Minute):
			cmd.Process.Kill()
			<-exited
		}
	}
	t.Cleanup(stop)
	return func() *restartLoad {
		t.Helper()
		stop()
		b, err := os.ReadFile(filepath.Join(dir, "report.json"))
		var r loadReport
		if err == nil {
			err = json.Unmarshal(b, &r)
		}
		if err != nil {
			t.Fatalf("the load's report: %v\n%s", err, out)
		}
		l := &restartLoad{mnt: mnt, ops: r.Ops, failures: r.Failures, longest: r.Longest, written: map[string][]byte{}}
		for name, i := range r.Seeds {
			l.written[name] = loadPayload(i)
		}
		return l
	}
}

// TestLoadHelper is the load of startLoadProcess, when run by it.
func TestLoadHelper(t *testing.T) {
	mnt, dir := os.Getenv("S3MEDIAFS_LOAD_MNT"), os.Getenv("S3MEDIAFS_LOAD_DIR")
	if mnt == "" {
		t.Skip("run by startLoadProcess")
	}
	l := startLoad(t, mnt)
	for {
		if _, err := os.Stat(filepath.Join(dir, "stop")); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	l.halt()
	b, _ := json.Marshal(loadReport{Ops: l.ops, Failures: l.failures, Longest: l.longest, Seeds: l.seeds})
	if err := os.WriteFile(filepath.Join(dir, "report.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// report fails t for any failed operation and returns the figures.
func (l *restartLoad) report(t *testing.T, what string) string {
	t.Helper()
	report := fmt.Sprintf("%s: %d operations, %d failed, longest %v", what, l.ops, len(l.failures), l.longest.Round(time.Millisecond))
	if len(l.failures) > 0 {
		t.Errorf("%s: %d operations failed; first: %s", what, len(l.failures), strings.Join(l.failures[:min(5, len(l.failures))], "; "))
	}
	return report
}

// A crash under systemd: SIGKILL, the unit's restart a second later with
// the connection from the file-descriptor store, then 20 in a row. The
// mount is never dead: the load stalls and nothing fails; a file open
// across the crashes stays readable; everything acknowledged is there.
func TestCrashUnderSystemdLoad(t *testing.T) {
	for _, mode := range ioModes {
		t.Run(mode.name, func(t *testing.T) {
			client, cfg, mnt, sd := mountUnderSystemd(t, mode.extra)
			finish := startLoadProcess(t, mnt)
			time.Sleep(time.Second)
			held, err := os.Open(filepath.Join(mnt, anyFile(t, mnt)))
			if err != nil {
				t.Fatal(err)
			}
			defer held.Close()
			sd.crash()
			time.Sleep(time.Second)
			if !strings.Contains(sd.logs(), `"serving the live mount handed over; it was never unmounted" from=inherited`) {
				t.Fatalf("the restart did not go on with the mount\n%s", sd.logs())
			}
			l := finish()
			t.Log(l.report(t, "one SIGKILL ("+mode.name+")"))
			finish2 := startLoadProcess(t, mnt)
			time.Sleep(500 * time.Millisecond)
			for range 20 {
				sd.crash()
				time.Sleep(300 * time.Millisecond)
			}
			time.Sleep(time.Second)
			l2 := finish2()
			t.Log(l2.report(t, "20 SIGKILLs in a row ("+mode.name+")"))
			if _, err := io.ReadAll(held); err != nil {
				t.Errorf("a file open across the crashes: %v", err)
			}
			held.Close()
			if n := strings.Count(mountTable(t), " "+mnt+" "); n != 1 {
				t.Fatalf("%d mounts at the mount point, want 1", n)
			}
			l.checkAllRead(t)
			l2.checkAllRead(t)
			flushed(t, cfg, time.Minute)
			for _, w := range []map[string][]byte{l.written, l2.written} {
				for name, data := range w {
					if got, ok := object(t, client, name); !ok || !bytes.Equal(got, data) {
						t.Fatalf("%s not in the store intact", name)
					}
				}
			}
			// A stop removes the mount and empties the store.
			sd.stop()
			if isMounted(mnt) {
				t.Fatal("still mounted after SIGTERM")
			}
			eventually(t, 10*time.Second, "the store emptied after a stop", func() bool {
				sd.mu.Lock()
				defer sd.mu.Unlock()
				return len(sd.store) == 0
			})
		})
	}
}

// `systemctl reload` after a package upgrade: the binary on disk is
// replaced, SIGHUP makes the daemon run it in its own process (the same
// PID, as systemd's main process must stay), with the mount; the load
// sees no failure.
func TestReloadUnderLoad(t *testing.T) {
	next := otherBuild(t)
	client, srv, bucket := s3test.Bucket(t, "synapse/")
	cfg := config(t, srv, "", bucket, t.TempDir(), "")
	mnt := t.TempDir()
	installed := filepath.Join(t.TempDir(), "s3mediafs")
	copyFile(t, binary, installed)
	d := startBinary(t, installed, cfg, mnt, nil)
	l := startLoad(t, mnt)
	time.Sleep(time.Second)
	copyFile(t, next, installed+".new")
	if err := os.Rename(installed+".new", installed); err != nil {
		t.Fatal(err)
	}
	d.cmd.Process.Signal(syscall.SIGHUP)
	eventually(t, 60*time.Second, "the daemon serving again after SIGHUP", func() bool {
		return strings.Contains(d.logs(), `"serving the live mount handed over; it was never unmounted" from=inherited`)
	})
	time.Sleep(time.Second)
	t.Log(l.finish(t, "reload with a new binary"))
	select {
	case <-d.exited:
		t.Fatalf("the daemon's process ended: %v\n%s", d.err, d.logs())
	default:
	}
	out, _ := cli(t, "status", "--socket", socketOf(t, cfg))
	if !strings.Contains(out, "9.9.9-upgrade") {
		t.Errorf("status after the reload does not name the new build:\n%s", out)
	}
	l.checkAllRead(t)
	flushed(t, cfg, time.Minute)
	for name, data := range l.written {
		if got, ok := object(t, client, name); !ok || !bytes.Equal(got, data) {
			t.Fatalf("%s not in the store intact", name)
		}
	}
	d.terminate(t)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err == nil {
		err = os.WriteFile(to, b, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// The real Synapse, uploading and downloading through its HTTP API while
// the daemon under it is killed (the unit's restart goes on with the
// mount) and then upgraded (the same mount command from another build):
// no HTTP request fails, and Synapse logs no error.
func TestRealSynapseThroughRestarts(t *testing.T) {
	next := otherBuild(t)
	_, srv, bucket := s3test.Bucket(t, "synapse/")
	cfg := config(t, srv, "", bucket, t.TempDir(), "log_level: info\n")
	mnt := t.TempDir()
	sd := newFakeSystemd(t, cfg, mnt)
	sd.start()
	syn := startSynapse(t, mnt, "max_upload_size: 50M\n")

	var mu sync.Mutex
	var failures []string
	requests := 0
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		client := &http.Client{Timeout: 60 * time.Second}
		call := func(method, path string, body []byte) ([]byte, int, error) {
			req, err := http.NewRequest(method, syn.url+path, bytes.NewReader(body))
			if err != nil {
				return nil, 0, err
			}
			req.Header.Set("Authorization", "Bearer "+syn.token)
			req.Header.Set("Content-Type", "application/octet-stream")
			resp, err := client.Do(req)
			if err != nil {
				return nil, 0, err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			return b, resp.StatusCode, err
		}
		fail := func(f string, a ...any) {
			mu.Lock()
			failures = append(failures, fmt.Sprintf(f, a...))
			mu.Unlock()
		}
		uploaded := map[string][]byte{}
		var ids []string
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			data := payload(30_000+i, i)
			b, status, err := call("POST", fmt.Sprintf("/_matrix/media/v3/upload?filename=f%d.bin", i), data)
			var out struct {
				ContentURI string `json:"content_uri"`
			}
			if err != nil || status != 200 || json.Unmarshal(b, &out) != nil {
				fail("upload %d: HTTP %d %v: %.200s", i, status, err, b)
				continue
			}
			id := strings.TrimPrefix(out.ContentURI, "mxc://"+syn.server+"/")
			uploaded[id] = data
			ids = append(ids, id)
			old := ids[(i*7919)%len(ids)]
			got, status, err := call("GET", "/_matrix/media/v3/download/"+syn.server+"/"+old, nil)
			if err != nil || status != 200 || !bytes.Equal(got, uploaded[old]) {
				fail("download %s: HTTP %d %v, %d bytes", old, status, err, len(got))
			}
			mu.Lock()
			requests += 2
			mu.Unlock()
		}
	}()
	time.Sleep(2 * time.Second)
	sd.crash()
	time.Sleep(2 * time.Second)
	d := startBinary(t, next, cfg, mnt, nil)
	eventually(t, 60*time.Second, "the old daemon gone after the takeover", func() bool {
		select {
		case <-sd.exited:
			return true
		default:
			return false
		}
	})
	time.Sleep(2 * time.Second)
	close(stop)
	<-done
	mu.Lock()
	t.Logf("real Synapse through a crash and an upgrade: %d HTTP requests, %d failed", requests, len(failures))
	if len(failures) > 0 {
		t.Errorf("HTTP requests failed: %s", strings.Join(failures[:min(5, len(failures))], "; "))
	}
	mu.Unlock()
	if errs := syn.logErrors(); len(errs) > 0 {
		t.Errorf("Synapse logged errors:\n%s", strings.Join(errs, "\n"))
	}
	syn.stop()
	d.terminate(t)
}

// A file being written when the daemon is killed: the process after it
// must know the kernel still holds the file open for writing. Found under
// 20 kills in a row: the restarted daemon took the half-written file for
// owed, uploaded it, called it clean, and then, finding the data file
// longer than the record, dropped it as torn: the writer's close read back
// 0 bytes. Here the writer waits, half done, while the daemon is killed
// and restarted, then finishes; and again across a reload.
func TestWriterOpenAcrossCrash(t *testing.T) {
	for _, mode := range ioModes {
		t.Run(mode.name, func(t *testing.T) {
			client, cfg, mnt, sd := mountUnderSystemd(t, mode.extra)
			if err := os.MkdirAll(filepath.Join(mnt, "local_content/aa/bb"), 0o755); err != nil {
				t.Fatal(err)
			}
			// One writer has written nothing yet, one half of its file.
			empty := heldWriter(t, mnt, "local_content/aa/bb/empty", 0, 30_000)
			half := heldWriter(t, mnt, "local_content/aa/bb/half", 15_000, 30_000)
			sd.crash()
			// Time for the restarted daemon's uploads to act on what it
			// takes for owed; the check below holds however long this is.
			time.Sleep(2 * time.Second)
			for _, w := range []*heldWrite{empty, half} {
				if err := w.finish(); err != nil {
					t.Errorf("%s: %v", w.name, err)
				}
			}
			// The same across a reload (SIGHUP: the daemon hands the
			// mount to the binary on disk, in its own process).
			again := heldWriter(t, mnt, "local_content/aa/bb/reload", 10_000, 25_000)
			const adopted = `"serving the live mount handed over; it was never unmounted" from=inherited`
			sd.cmd.Process.Signal(syscall.SIGHUP)
			eventually(t, time.Minute, "the daemon serving again after SIGHUP", func() bool {
				return strings.Count(sd.logs(), adopted) >= 2
			})
			time.Sleep(2 * time.Second)
			if err := again.finish(); err != nil {
				t.Errorf("%s: %v", again.name, err)
			}
			flushed(t, cfg, time.Minute)
			for _, w := range []*heldWrite{empty, half, again} {
				if got, ok := object(t, client, w.name); !ok || !bytes.Equal(got, w.data) {
					t.Errorf("%s is not in the store whole: %d bytes of %d", w.name, len(got), len(w.data))
				}
			}
		})
	}
}

// heldWrite is a file a process of its own (see startLoadProcess for why)
// holds open for writing, part written, until finish.
type heldWrite struct {
	name, dir string
	data      []byte
	exited    chan struct{}
}

// heldWriter creates name, writes the first `first` bytes of size, and
// returns once they are written.
func heldWriter(t *testing.T, mnt, name string, first, size int) *heldWrite {
	t.Helper()
	w := &heldWrite{name: name, dir: t.TempDir(), data: payload(size, len(name)), exited: make(chan struct{})}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHeldWriterHelper$")
	cmd.Env = append(os.Environ(), "S3MEDIAFS_LOAD_MNT="+mnt, "S3MEDIAFS_LOAD_DIR="+w.dir,
		fmt.Sprintf("S3MEDIAFS_HELD=%s:%d:%d", name, first, size))
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(w.exited) }()
	t.Cleanup(func() {
		os.WriteFile(filepath.Join(w.dir, "go"), nil, 0o600)
		select {
		case <-w.exited:
		case <-time.After(2 * time.Minute):
			cmd.Process.Kill()
			<-w.exited
		}
	})
	eventually(t, time.Minute, name+" half written", func() bool {
		_, err := os.Stat(filepath.Join(w.dir, "ready"))
		return err == nil
	})
	return w
}

// finish lets the writer write the rest, close, and check what the mount
// then says: the error is the writer's, if any.
func (w *heldWrite) finish() error {
	os.WriteFile(filepath.Join(w.dir, "go"), nil, 0o600)
	select {
	case <-w.exited:
	case <-time.After(2 * time.Minute):
		return errors.New("the writer did not finish")
	}
	b, err := os.ReadFile(filepath.Join(w.dir, "result"))
	if err != nil {
		return fmt.Errorf("no result: %v", err)
	}
	if s := string(b); s != "ok" {
		return errors.New(s)
	}
	return nil
}

// TestHeldWriterHelper is the writer of heldWriter, when run by it.
func TestHeldWriterHelper(t *testing.T) {
	mnt, dir, spec := os.Getenv("S3MEDIAFS_LOAD_MNT"), os.Getenv("S3MEDIAFS_LOAD_DIR"), os.Getenv("S3MEDIAFS_HELD")
	if spec == "" {
		t.Skip("run by heldWriter")
	}
	var name string
	var first, size int
	parts := strings.Split(spec, ":")
	name = parts[0]
	fmt.Sscan(parts[1], &first)
	fmt.Sscan(parts[2], &size)
	data := payload(size, len(name))
	result := func(err error) {
		msg := "ok"
		if err != nil {
			msg = err.Error()
		}
		os.WriteFile(filepath.Join(dir, "result"), []byte(msg), 0o600)
	}
	path := filepath.Join(mnt, name)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		result(err)
		return
	}
	if _, err := f.Write(data[:first]); err != nil {
		result(err)
		return
	}
	os.WriteFile(filepath.Join(dir, "ready"), nil, 0o600)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go")); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := f.Write(data[first:]); err != nil {
		result(fmt.Errorf("write after the crash: %w", err))
		return
	}
	if err := f.Close(); err != nil {
		result(fmt.Errorf("close after the crash: %w", err))
		return
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != int64(size) {
		result(fmt.Errorf("size after close: %v %v, want %d", fi, err, size))
		return
	}
	got, err := os.ReadFile(path)
	if err == nil && !bytes.Equal(got, data) {
		err = fmt.Errorf("read back %d bytes that differ", len(got))
	}
	result(err)
}
