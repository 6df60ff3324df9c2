package e2e

// What another local user can and cannot do around a mount.

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// asNobody runs a command as user nobody and returns its combined output
// and error.
func asNobody(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	return cmd.CombinedOutput()
}

// TestEmbeddedStoreIsTheOwnersAlone: the quickstart's embedded store
// checks no signatures, so no other local user may reach it: it listens
// on no TCP port, only on a Unix socket in a directory only root enters.
func TestEmbeddedStoreIsTheOwnersAlone(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3")
	}
	objects := filepath.Join(t.TempDir(), "s3")
	if err := os.MkdirAll(objects, 0o755); err != nil { // made open: the daemon closes it
		t.Fatal(err)
	}
	mnt := t.TempDir()
	cmd := exec.Command(binary, "mount", "--embedded-s3", objects, "--cache-dir", t.TempDir(),
		"-o", "metrics_address=,control_socket="+filepath.Join(t.TempDir(), "c.sock"), mnt)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		unmount(mnt)
	})
	eventually(t, 30*time.Second, "the quickstart mount", func() bool { return isMounted(mnt) })
	synapseWrite(t, filepath.Join(mnt, "local_content/ab/cd/quick"), payload(3000, 1))

	fi, err := os.Stat(objects)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("the embedded store's directory: %v, %v; want 0700", fi.Mode(), err)
	}
	sock := filepath.Join(objects, "s3.sock")
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("no socket: %v\n%s", err, logs.String())
	}
	out, err := asNobody(py, "-c", "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); print('connected')", sock)
	if err == nil || strings.Contains(string(out), "connected") {
		t.Fatalf("user nobody reached the embedded store: %s", out)
	}
	// The daemon listens on no TCP port at all (metrics are off here).
	if listening := tcpListeners(t, cmd.Process.Pid); len(listening) > 0 {
		t.Fatalf("the daemon listens on TCP: %v", listening)
	}
}

// tcpListeners returns the local addresses of the TCP sockets in LISTEN
// state that process pid holds.
func tcpListeners(t *testing.T, pid int) []string {
	t.Helper()
	inodes := map[string]bool{}
	fds, _ := filepath.Glob(filepath.Join("/proc", itoa(pid), "fd", "*"))
	for _, fd := range fds {
		if l, err := os.Readlink(fd); err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	var out []string
	for _, table := range []string{"tcp", "tcp6"} {
		b, _ := os.ReadFile(filepath.Join("/proc", itoa(pid), "net", table))
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) > 9 && f[3] == "0A" && inodes[f[9]] { // 0A: LISTEN
				out = append(out, f[1])
			}
		}
	}
	return out
}

func itoa(n int) string { return strconv.Itoa(n) }
