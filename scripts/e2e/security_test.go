// What another local user can and cannot do around a mount.

package e2e

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

	"github.com/s3mediafs/s3mediafs/fs/mounttest"

	"github.com/s3mediafs/s3mediafs/s3/s3test"
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
	checkLeaks(t)
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
	mounttest.MustWriteLikeSynapse(t, filepath.Join(mnt, "local_content/ab/cd/quick"), payload(3000, 1))

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

// TestModesKeepMediaFromOtherUsers: file_mode and dir_mode set what
// files and directories from S3 show, and the root's chmod and chown work
// and persist: an admin can keep other local users out of the media.
func TestModesKeepMediaFromOtherUsers(t *testing.T) {
	client, srv, bucket := s3test.Bucket(t, "synapse/")
	key := "local_content/ab/cd/private"
	if err := client.Put(t.Context(), key, bytes.NewReader([]byte("private media")), 13, nil); err != nil {
		t.Fatal(err)
	}
	cacheDir := t.TempDir()
	cfg := config(t, srv, "", bucket, cacheDir, "file_mode: 0640\ndir_mode: 0750\n")
	mnt := t.TempDir()
	d := start(t, cfg, mnt)
	p := filepath.Join(mnt, key)
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("a file from S3: %v, %v; want 0640", fi.Mode(), err)
	}
	if fi, err := os.Stat(filepath.Join(mnt, "local_content")); err != nil || fi.Mode().Perm() != 0o750 {
		t.Fatalf("a directory from S3: %v, %v; want 0750", fi.Mode(), err)
	}
	if out, err := asNobody("cat", p); err == nil {
		t.Fatalf("user nobody read private media: %s", out)
	}
	// The root: chmod and chown work, and last across a restart.
	if err := os.Chmod(mnt, 0o711); err != nil {
		t.Fatalf("chmod of the mount root: %v", err)
	}
	if err := os.Chown(mnt, 65534, 65534); err != nil {
		t.Fatalf("chown of the mount root: %v", err)
	}
	d.terminate(t)
	d = start(t, cfg, mnt)
	defer d.terminate(t)
	fi, err := os.Stat(mnt)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o711 || st.Uid != 65534 || st.Gid != 65534 {
		t.Fatalf("the root after a restart: %v uid %d gid %d; want 0711 owned by 65534", fi.Mode(), st.Uid, st.Gid)
	}
	if got, err := os.ReadFile(p); err != nil || string(got) != "private media" {
		t.Fatalf("root reads the media: %q, %v", got, err)
	}
}
