// import resumed after a kill, and the install script.

package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/s3/s3test"
)

// TestImportResumesAfterKill: an import killed with SIGKILL and run again
// uploads each file exactly once, skips url_cache, and verifies.
func TestImportResumesAfterKill(t *testing.T) {
	client, srv, bucket := s3test.Bucket(t, "synapse/")
	proxy := s3test.NewProxy(t, srv.Endpoint)
	proxy.SetFail(func(r *http.Request) int {
		if r.Method == http.MethodPut {
			time.Sleep(40 * time.Millisecond)
		}
		return 0
	})
	src := t.TempDir()
	const n = 60
	for i := range n {
		p := filepath.Join(src, fmt.Sprintf("local_content/%02x/cd/media%03d", i%7, i))
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, payload(2000+i*500, i), 0o644)
	}
	os.MkdirAll(filepath.Join(src, "url_cache/2026-11-25"), 0o755)
	os.WriteFile(filepath.Join(src, "url_cache/2026-11-25/preview"), []byte("stays local"), 0o644)
	cfg := config(t, srv, proxy.URL, bucket, t.TempDir(), "")

	first := exec.Command(binary, "import", "--config", cfg, "--from", src, "--concurrency", "2")
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "some uploads", func() bool { return len(putsDone(proxy)) >= 15 })
	first.Process.Kill()
	first.Wait()
	if done := len(putsDone(proxy)); done >= n {
		t.Fatalf("the first run finished (%d PUTs) before it was killed", done)
	}

	out, code := cli(t, "import", "--config", cfg, "--from", src, "--verify")
	if code != 0 || !strings.Contains(out, "verified: 60 files are in the bucket byte for byte") {
		t.Fatalf("resumed import: %d\n%s", code, out)
	}
	// Every file is in the bucket (verified above) and none was stored
	// twice. (A PUT cut off by the kill may have been stored without the
	// proxy seeing its 200; the re-run then rightly skips that file.)
	counts := map[string]int{}
	for _, path := range putsDone(proxy) {
		counts[path]++
	}
	if len(counts) < n-2 {
		t.Fatalf("only %d distinct files uploaded, want about %d", len(counts), n)
	}
	for path, c := range counts {
		if c != 1 {
			t.Errorf("%s uploaded %d times", path, c)
		}
		if strings.Contains(path, "url_cache") {
			t.Errorf("url_cache uploaded: %s", path)
		}
	}
	if got, ok := object(t, client, "local_content/03/cd/media010"); !ok || string(got) != string(payload(2000+10*500, 10)) {
		t.Fatal("imported object differs")
	}
	out, code = cli(t, "import", "--config", cfg, "--from", src, "--dry-run")
	if code != 0 || !strings.Contains(out, "60 already in the bucket; 0 conflicts; 0 to upload") {
		t.Fatalf("dry run after the import: %d\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(src, "local_content/00/cd/media000")); err != nil {
		t.Fatal("the source was touched without --delete-source")
	}
}

// putsDone lists the paths of PutObject requests the store answered 200.
func putsDone(p *s3test.Proxy) []string {
	var out []string
	for _, r := range p.Requests() {
		if r.Op() == "PutObject" && r.Status == http.StatusOK {
			out = append(out, r.Path)
		}
	}
	return out
}

// TestInstallScript stages an install and checks what it lays down.
func TestInstallScript(t *testing.T) {
	dest := t.TempDir()
	cmd := exec.Command("bash", "../install.sh")
	cmd.Env = append(os.Environ(), "DESTDIR="+dest, "BINARY="+binary)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("install.sh: %v\n%s", err, out)
	}
	for path, mode := range map[string]os.FileMode{
		"usr/local/bin/s3mediafs":              0o755,
		"etc/s3mediafs.yaml":                   0o600,
		"etc/systemd/system/s3mediafs.service": 0o644,
		"var/cache/s3mediafs":                  0o700 | os.ModeDir,
	} {
		fi, err := os.Stat(filepath.Join(dest, path))
		if err != nil || fi.Mode() != mode {
			t.Errorf("%s: %v %v, want %v", path, fi.Mode(), err, mode)
		}
	}
	if target, err := os.Readlink(filepath.Join(dest, "sbin/mount.s3mediafs")); err != nil || target != "/usr/local/bin/s3mediafs" {
		t.Errorf("mount helper link: %q %v", target, err)
	}
	// The sample config is valid apart from what the operator fills in.
	out, code := cli(t, "mount", "--config", filepath.Join(dest, "etc/s3mediafs.yaml"), "-o", "cache_dir="+t.TempDir(), "/nonexistent")
	if code == 0 || !strings.Contains(out, "mount point") {
		t.Errorf("sample config: %d %s", code, out)
	}
}
