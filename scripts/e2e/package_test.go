// The Debian package, as an operator meets it: built by
// scripts/package.sh, installed with dpkg, used through mount(8),
// upgraded under a live mount, removed.

package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/fs/mounttest"

	"github.com/s3mediafs/s3mediafs/s3/s3test"
)

// buildPackage runs scripts/package.sh and returns the .deb it wrote.
func buildPackage(t *testing.T, version string) string {
	t.Helper()
	// By the source file's place, not the working directory, which a
	// test running alongside may have changed (t.Chdir).
	_, self, _, _ := runtime.Caller(0)
	cmd := exec.Command(filepath.Join(filepath.Dir(self), "..", "package.sh"))
	cmd.Env = append(os.Environ(), "VERSION="+version, "OUT_DIR="+t.TempDir())
	out, err := cmd.Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("package.sh: %v\n%s", err, exit.Stderr)
		}
		t.Fatalf("package.sh: %v", err)
	}
	deb := strings.TrimSpace(string(out))
	if want := fmt.Sprintf("s3mediafs_%s_%s.deb", version, runtime.GOARCH); filepath.Base(deb) != want {
		t.Fatalf("package.sh wrote %s, want %s", deb, want)
	}
	return deb
}

func dpkg(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("dpkg", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// packagedFiles is every path the package installs, with its mode; a
// symlink's mode is its target.
var packagedFiles = map[string]string{
	"/usr/bin/s3mediafs":                                              "-rwxr-xr-x",
	"/sbin/mount.s3mediafs":                                           "/usr/bin/s3mediafs",
	"/lib/systemd/system/s3mediafs.service":                           "-rw-r--r--",
	"/etc/s3mediafs.yaml":                                             "-rw-------",
	"/var/cache/s3mediafs":                                            "drwx------",
	"/usr/share/doc/s3mediafs/copyright":                              "-rw-r--r--",
	"/usr/share/doc/s3mediafs/README.md.gz":                           "-rw-r--r--",
	"/usr/share/doc/s3mediafs/examples/fstab.example":                 "-rw-r--r--",
	"/usr/share/doc/s3mediafs/examples/s3mediafs.yaml.example":        "-rw-r--r--",
	"/usr/share/doc/s3mediafs/examples/s3mediafs-media.mount.example": "-rw-r--r--",
	"/usr/share/man/man8/s3mediafs.8.gz":                              "-rw-r--r--",
	"/usr/share/man/man8/mount.s3mediafs.8.gz":                        "s3mediafs.8.gz",
}

func TestDebianPackage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("installs a package: needs root")
	}
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("no dpkg here")
	}
	if err := exec.Command("dpkg-query", "-W", "s3mediafs").Run(); err == nil {
		t.Skip("s3mediafs is installed on this machine; not replacing it")
	}
	// Anything that used the defaults (a quickstart, a mount by hand)
	// leaves /var/cache/s3mediafs, perhaps with uploads still owed: the
	// package must not take it over, and its removal would keep it.
	for _, p := range []string{"/etc/s3mediafs.yaml", "/sbin/mount.s3mediafs", "/usr/bin/s3mediafs", "/var/cache/s3mediafs"} {
		if _, err := os.Lstat(p); err == nil {
			t.Skipf("%s exists; not replacing it", p)
		}
	}
	deb := buildPackage(t, "0.0.1~e2e")
	t.Cleanup(func() { exec.Command("dpkg", "--purge", "s3mediafs").Run() })
	if out := dpkg(t, "-i", deb); !strings.Contains(out, "edit /etc/s3mediafs.yaml") {
		t.Errorf("first install says nothing of the config:\n%s", out)
	}

	listed := dpkg(t, "-L", "s3mediafs")
	for path, want := range packagedFiles {
		if !strings.Contains(listed, path+"\n") {
			t.Errorf("dpkg -L lacks %s", path)
		}
		fi, err := os.Lstat(path)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		got := fi.Mode().String()
		if fi.Mode()&os.ModeSymlink != 0 {
			got, _ = os.Readlink(path)
		}
		if got != want {
			t.Errorf("%s is %s, want %s", path, got, want)
		}
	}
	if conf := dpkg(t, "-s", "s3mediafs"); !strings.Contains(conf, "/etc/s3mediafs.yaml") {
		t.Errorf("/etc/s3mediafs.yaml is not a conffile:\n%s", conf)
	}
	unit, _ := os.ReadFile("/lib/systemd/system/s3mediafs.service")
	if !strings.Contains(string(unit), "ExecStart=/usr/bin/s3mediafs mount") {
		t.Errorf("the unit does not run the packaged binary:\n%s", unit)
	}
	out, err := exec.Command("/usr/bin/s3mediafs", "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "s3mediafs 0.0.1~e2e (commit ") || !strings.Contains(string(out), runtime.Version()) {
		t.Errorf("--version: %v %q", err, out)
	}
	if out, err := exec.Command("man", "-w", "s3mediafs").CombinedOutput(); err == nil && !strings.Contains(string(out), "s3mediafs.8") {
		t.Errorf("man -w s3mediafs: %s", out)
	}

	// The installed helper serves a mount, and an upgrade leaves it be.
	client, srv, bucket := s3test.Bucket(t, "synapse/")
	cfg := config(t, srv, "", bucket, t.TempDir(), "")
	mnt := t.TempDir()
	t.Cleanup(func() { unmount(mnt) })
	mount := exec.Command("mount", "-t", "s3mediafs", cfg, mnt, "-o", "log_file="+filepath.Join(t.TempDir(), "daemon.log"))
	mount.WaitDelay = 5 * time.Second
	if out, err := mount.CombinedOutput(); err != nil {
		t.Fatalf("mount -t s3mediafs with the packaged helper: %v\n%s", err, out)
	}
	mounttest.MustWriteLikeSynapse(t, filepath.Join(mnt, "local_content/aa/bb/packaged"), payload(5000, 3))

	if out := dpkg(t, "-i", buildPackage(t, "0.0.2~e2e")); !strings.Contains(out, "upgraded from 0.0.1~e2e") || !strings.Contains(out, "kill -HUP") {
		t.Errorf("an upgrade does not say how a mount made from fstab takes the new binary:\n%s", out)
	}
	if !isMounted(mnt) {
		t.Fatal("the upgrade touched the mounted media store")
	}
	// As it says: SIGHUP restarts the helper's daemon in place, on the new
	// binary, the mount kept.
	if out, err := exec.Command("pkill", "-HUP", "-f", "^/usr/bin/s3mediafs mount").CombinedOutput(); err != nil {
		t.Fatalf("pkill -HUP the packaged daemon: %v %s", err, out)
	}
	eventually(t, 60*time.Second, "the packaged daemon on the new binary", func() bool {
		out, err := exec.Command("/usr/bin/s3mediafs", "status", "--socket", socketOf(t, cfg)).CombinedOutput()
		return err == nil && strings.Contains(string(out), "0.0.2~e2e")
	})
	if !isMounted(mnt) {
		t.Fatal("the restart in place unmounted the media store")
	}
	mounttest.MustWriteLikeSynapse(t, filepath.Join(mnt, "local_content/aa/bb/after-upgrade"), payload(6000, 4))
	if out, err := exec.Command("/usr/bin/s3mediafs", "flush", "--timeout", "30s", "--socket", socketOf(t, cfg)).CombinedOutput(); err != nil {
		t.Fatalf("flush with the packaged binary: %v %s", err, out)
	}
	for _, key := range []string{"local_content/aa/bb/packaged", "local_content/aa/bb/after-upgrade"} {
		if _, ok := object(t, client, key); !ok {
			t.Errorf("%s not in S3", key)
		}
	}
	if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v %s", err, out)
	}

	// Removed: nothing is left but the conffile.
	dpkg(t, "-r", "s3mediafs")
	for path := range packagedFiles {
		_, err := os.Lstat(path)
		switch {
		case path == "/etc/s3mediafs.yaml" && err != nil:
			t.Errorf("dpkg -r removed the conffile: %v", err)
		case path != "/etc/s3mediafs.yaml" && err == nil:
			t.Errorf("dpkg -r left %s", path)
		}
	}
	if st, _ := exec.Command("dpkg-query", "-W", "-f=${Status}", "s3mediafs").Output(); string(st) != "deinstall ok config-files" {
		t.Errorf("after dpkg -r the package is %q", st)
	}
	dpkg(t, "--purge", "s3mediafs")
	if _, err := os.Lstat("/etc/s3mediafs.yaml"); err == nil {
		t.Error("dpkg --purge left the conffile")
	}
}
