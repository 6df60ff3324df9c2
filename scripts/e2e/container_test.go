// The container example in scripts/deploy/docker, checked as far as a
// machine without a Docker engine allows: the compose file parses and names
// only what the package and the binary have, and its mount propagation
// works with mount namespaces made by unshare.

package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/fs/mounttest"

	"go.yaml.in/yaml/v3"

	"github.com/s3mediafs/s3mediafs/s3/s3test"
)

type composeVolume struct {
	Type, Source, Target string
	Bind                 struct{ Propagation string }
}

type composeService struct {
	Build           struct{ Context, Dockerfile string }
	Command         []string
	CapAdd          []string `yaml:"cap_add"`
	Devices         []string
	Volumes         []composeVolume
	DependsOn       map[string]struct{ Condition string } `yaml:"depends_on"`
	StopGracePeriod string                                `yaml:"stop_grace_period"`
	Healthcheck     struct{ Test []string }
}

func TestContainerExample(t *testing.T) {
	dir := "../deploy/docker"
	b, err := os.ReadFile(filepath.Join(dir, "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var compose struct{ Services map[string]composeService }
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&compose); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	fs, syn := compose.Services["s3mediafs"], compose.Services["synapse"]
	if !strings.Contains(strings.Join(fs.Devices, " "), "/dev/fuse") || !strings.Contains(strings.Join(fs.CapAdd, " "), "SYS_ADMIN") {
		t.Errorf("s3mediafs service lacks /dev/fuse or SYS_ADMIN: %+v", fs)
	}
	media := func(s composeService, target string) composeVolume {
		for _, v := range s.Volumes {
			if v.Target == target {
				return v
			}
		}
		t.Fatalf("no volume at %s", target)
		return composeVolume{}
	}
	fsMedia, synMedia := media(fs, "/media_store"), media(syn, "/data/media_store")
	if fsMedia.Source != synMedia.Source || fsMedia.Bind.Propagation != "rshared" || synMedia.Bind.Propagation != "rslave" {
		t.Errorf("media binds: s3mediafs %+v, synapse %+v", fsMedia, synMedia)
	}
	if media(fs, "/var/cache/s3mediafs").Type != "volume" {
		t.Error("the cache is not kept in a volume")
	}
	if syn.DependsOn["s3mediafs"].Condition != "service_healthy" {
		t.Errorf("synapse does not wait for the mount: %+v", syn.DependsOn)
	}
	if d, err := time.ParseDuration(fs.StopGracePeriod); err != nil || d <= 60*time.Second {
		t.Errorf("stop_grace_period %q is not above the default drain_timeout", fs.StopGracePeriod)
	}
	// Every path it names inside the image is one the package installs,
	// and every flag is one the binary takes.
	for _, p := range append([]string{fsMedia.Target}, fs.Healthcheck.Test...) {
		if strings.HasPrefix(p, "/usr/") || strings.HasPrefix(p, "/etc/") || strings.HasPrefix(p, "/var/") {
			if _, ok := packagedFiles[p]; !ok {
				t.Errorf("compose.yaml names %s, which the package does not install", p)
			}
		}
	}
	for _, v := range fs.Volumes {
		if _, ok := packagedFiles[v.Target]; !ok && v.Target != fsMedia.Target {
			t.Errorf("compose.yaml mounts over %s, which the package does not install", v.Target)
		}
	}
	help, _ := exec.Command(binary, "mount", "-h").CombinedOutput()
	for _, a := range fs.Command[1:] {
		if strings.HasPrefix(a, "--") && !strings.Contains(string(help), "  -"+strings.TrimPrefix(a, "--")+" ") {
			t.Errorf("compose.yaml passes %s, which 's3mediafs mount' does not take", a)
		}
	}
	if fs.Command[0] != "mount" {
		t.Errorf("command %q", fs.Command)
	}
	dockerfile, _ := os.ReadFile(filepath.Join(dir, "Dockerfile"))
	for _, want := range []string{"COPY s3mediafs_*.deb", `ENTRYPOINT ["/usr/bin/s3mediafs"]`} {
		if !strings.Contains(string(dockerfile), want) {
			t.Errorf("Dockerfile lacks %s", want)
		}
	}
	if filepath.Clean(filepath.Join(dir, fs.Build.Context)) != "../../dist" {
		t.Errorf("build context %s is not package.sh's dist/", fs.Build.Context)
	}

	t.Run("propagation", testPropagation)
}

// nsHolder starts a process in a new mount namespace that runs setup and
// then waits, and returns its pid; it is killed in t.Cleanup.
func nsHolder(t *testing.T, propagation, setup string) int {
	t.Helper()
	cmd := exec.Command("unshare", "--mount", "--propagation", propagation, "sh", "-c", setup+" && exec sleep 600")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd.Process.Pid
}

// readIn reads a file inside another process's mount namespace.
func readIn(pid int, path string) (string, error) {
	out, err := exec.Command("nsenter", "--mount", "--target", strconv.Itoa(pid), "cat", path).Output()
	return string(out), err
}

// testPropagation: the host's media directory, made a shared mount as the
// README says; s3mediafs mounts over a bind of it in a namespace of its
// own; Synapse's namespace, rslave, sees the mount appear, serve, and go;
// a private namespace (Docker's default) sees only the bare directory.
func testPropagation(t *testing.T) {
	_, srv, bucket := s3test.Bucket(t, "synapse/")
	host := filepath.Join(t.TempDir(), "media_store")
	os.Mkdir(host, 0o755)
	if out, err := exec.Command("sh", "-c", "mount --bind "+host+" "+host+" && mount --make-rshared "+host).CombinedOutput(); err != nil {
		t.Fatalf("make the host directory shared: %v %s", err, out)
	}
	t.Cleanup(func() { syscall.Unmount(host, syscall.MNT_DETACH) })

	synapse := nsHolder(t, "unchanged", "mount --make-rslave "+host)
	private := nsHolder(t, "private", "true")

	cfg := config(t, srv, "", bucket, t.TempDir(), "log_file: "+filepath.Join(t.TempDir(), "daemon.log")+"\n")
	socket := socketOf(t, cfg)
	mount := exec.Command("unshare", "--mount", "--propagation", "unchanged", binary, "mount", "--daemon", "--config", cfg, host)
	mount.WaitDelay = 5 * time.Second
	if out, err := mount.CombinedOutput(); err != nil {
		t.Fatalf("s3mediafs in its own namespace: %v\n%s", err, out)
	}
	t.Cleanup(func() { unmountAt(host) })

	file := filepath.Join(host, "local_content/pr/op/agated")
	mounttest.MustWriteLikeSynapse(t, file, []byte("through the mount"))
	got, err := readIn(synapse, file)
	if err != nil || got != "through the mount" {
		t.Fatalf("Synapse's rslave namespace reads %q, %v", got, err)
	}
	if got, err := readIn(private, file); err == nil {
		t.Fatalf("a private namespace sees the mount: %q", got)
	}
	// Unmounted on the host: the daemon exits, and Synapse's namespace
	// sees the bare directory again (why Synapse must stop first).
	if err := syscall.Unmount(host, 0); err != nil {
		t.Fatalf("umount on the host: %v", err)
	}
	eventually(t, 30*time.Second, "the daemon to exit", func() bool {
		_, err := os.Stat(socket)
		return errors.Is(err, os.ErrNotExist)
	})
	if got, err := readIn(synapse, file); err == nil {
		t.Fatalf("the mount is still seen in Synapse's namespace after the unmount: %q", got)
	}
}

// unmountAt removes the FUSE mount over host, leaving the shared bind
// under it for its own cleanup.
func unmountAt(host string) {
	for i := 0; i < 10; i++ {
		b, _ := os.ReadFile("/proc/self/mountinfo")
		if !strings.Contains(string(b), " "+host+" ") || !strings.Contains(string(b), "fuse.s3mediafs") {
			return
		}
		if !strings.Contains(mountTypesAt(string(b), host), "fuse") {
			return
		}
		syscall.Unmount(host, syscall.MNT_DETACH)
	}
}

func mountTypesAt(mountinfo, at string) string {
	var types []string
	for _, line := range strings.Split(mountinfo, "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == at {
			for i, x := range f {
				if x == "-" && i+1 < len(f) {
					types = append(types, f[i+1])
				}
			}
		}
	}
	return strings.Join(types, " ")
}
