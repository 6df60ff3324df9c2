// A full cache filesystem, filled from outside at a random moment while
// Synapse-pattern writes, renames and deletes run, on a small tmpfs and on
// a small loop-mounted ext4, with the store up and with it down: the
// daemon keeps serving (writers get ENOSPC, never ENOTCONN), a restart on
// the full filesystem (after SIGTERM or SIGKILL) serves every file whose
// close succeeded, and once there is room they all reach the store.

package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/fs/mounttest"
	"github.com/s3mediafs/s3mediafs/s3/s3test"
)

// smallCacheFS mounts a small filesystem of kind "tmpfs" (20 MiB) or
// "ext4" (64 MiB, in a loop file) for a cache, removed at cleanup.
func smallCacheFS(t *testing.T, kind string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounts a filesystem: needs root")
	}
	dir := t.TempDir()
	switch kind {
	case "tmpfs":
		if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=20m"); err != nil {
			t.Skipf("tmpfs: %v", err)
		}
	case "ext4":
		img := filepath.Join(t.TempDir(), "cache.img")
		if err := os.WriteFile(img, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(img, 64<<20); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
			t.Skipf("mkfs.ext4: %v %s", err, out)
		}
		if out, err := exec.Command("mount", "-o", "loop", img, dir).CombinedOutput(); err != nil {
			t.Skipf("loop mount: %v %s", err, out)
		}
		os.RemoveAll(filepath.Join(dir, "lost+found"))
	}
	t.Cleanup(func() {
		// The daemons are gone by now (their cleanups ran first).
		if err := syscall.Unmount(dir, 0); err != nil {
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return dir
}

// fillFrom writes dir/filler until its filesystem is full, as another
// process would; the filler's path is returned.
func fillFrom(t *testing.T, dir string) string {
	p := filepath.Join(dir, fmt.Sprintf("filler-%d", rand.Int()))
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		t.Error(err)
		return p
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			return p
		}
	}
}

func TestFullCacheFilesystem(t *testing.T) {
	// Each filesystem with each stop, and the store up and down across
	// them; the store only takes the uploads, so the second store
	// (SeaweedFS) runs two of them.
	variants := []struct {
		kind      string
		storeDown bool
		stop      string
	}{{"tmpfs", false, "TERM"}, {"tmpfs", true, "KILL"}, {"ext4", true, "TERM"}, {"ext4", false, "KILL"}}
	if os.Getenv("S3MEDIAFS_TEST_STORE") == "seaweedfs" {
		variants = variants[1:3]
	}
	for _, v := range variants {
		state := map[bool]string{false: "up", true: "down"}[v.storeDown]
		name := fmt.Sprintf("%s-%s-%s", v.kind, state, v.stop) // short: the control socket's path has a limit
		t.Run(name, func(t *testing.T) { fullCacheRun(t, v.kind, v.storeDown, v.stop) })
	}
}

func fullCacheRun(t *testing.T, kind string, storeDown bool, stop string) {
	client, srv, bucket := s3test.Bucket(t, "synapse/")
	proxy := s3test.NewProxy(t, srv.Endpoint)
	cacheDir := smallCacheFS(t, kind)
	cfg := config(t, srv, proxy.URL, bucket, cacheDir, "space_wait: 1s\nlog_level: info\n")
	mnt := t.TempDir()
	d := start(t, cfg, mnt)
	if storeDown {
		proxy.SetFaults(s3test.Faults{Down: true}, 1)
	}

	acked := map[string][]byte{}
	fillAt := 5 + rand.IntN(25)
	var fillers []string
	refused := 0
	for i := range 60 {
		if refused == 3 {
			break // each refusal waits space_wait: three say enough
		}
		if i == fillAt {
			fillers = append(fillers, fillFrom(t, cacheDir))
		}
		rel := fmt.Sprintf("local_content/%02x/%02x/media%d", i%7, i%5, i)
		data := payload(3000+i*997, i)
		err := mounttest.WriteLikeSynapse(filepath.Join(mnt, rel), data)
		switch {
		case err == nil:
			acked[rel] = data
		case errors.Is(err, syscall.ENOSPC):
			refused++
		default:
			t.Fatalf("write %d: %v (want success or ENOSPC)", i, err)
		}
		if i%6 == 5 {
			// A rename and a delete, as Synapse's purges and moves do.
			for old := range acked {
				moved := old + ".moved"
				if err := os.Rename(filepath.Join(mnt, old), filepath.Join(mnt, moved)); err == nil {
					acked[moved] = acked[old]
					delete(acked, old)
				} else if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("rename: %v", err)
				}
				break
			}
		}
	}
	if len(acked) == 0 {
		t.Fatal("no write succeeded before the filesystem filled")
	}
	// Still serving: every acknowledged file reads back.
	check := func(when string) {
		t.Helper()
		for rel, want := range acked {
			got, err := os.ReadFile(filepath.Join(mnt, rel))
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%s: %s: %d bytes, %v", when, rel, len(got), err)
			}
		}
	}
	check("on the full filesystem")

	if stop == "KILL" {
		d.kill()
	} else {
		d.stop()
	}
	fillers = append(fillers, fillFrom(t, cacheDir)) // full again before the start
	d = start(t, cfg, mnt)
	check("after a restart on the full filesystem")
	if err := os.WriteFile(filepath.Join(mnt, "local_content/new"), []byte("x"), 0o644); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("a write on the full filesystem after the restart: %v, want ENOSPC", err)
	}

	for _, f := range fillers {
		os.Remove(f)
	}
	proxy.SetFaults(s3test.Faults{}, 1)
	flushed(t, cfg, 60*time.Second)
	for rel, want := range acked {
		if got, ok := object(t, client, rel); !ok || !bytes.Equal(got, want) {
			t.Errorf("%s not in the store intact once there was room", rel)
		}
	}
	d.terminate(t)
	if logs := d.logs(); bytes.Contains([]byte(logs), []byte("SIGBUS")) {
		t.Fatal("SIGBUS in the daemon's log")
	}
}
