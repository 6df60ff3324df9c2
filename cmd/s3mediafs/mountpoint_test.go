// Mountpoint checks: non-empty refused, the mount type found, bind mounts
// accepted.

package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A mount over a media store that still holds files would hide them from
// Synapse: it is refused with the count and what to do, unless allowed.
func TestNonEmptyMountpointRefused(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"local_content/ab/cd", "remote_content"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := checkMountpoint(dir, false, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("empty directories only: %v", err)
	}
	for _, f := range []string{"local_content/ab/cd/efgh", "local_content/ab/cd/ijkl"} {
		if err := os.WriteFile(filepath.Join(dir, f), make([]byte, 1500), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, err := checkMountpoint(dir, false, slog.New(slog.DiscardHandler))
	if err == nil {
		t.Fatal("a media store holding files was accepted")
	}
	for _, want := range []string{"2 files", "2.9 KiB", "s3mediafs import", "allow_non_empty_mountpoint"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal %q does not say %q", err, want)
		}
	}
	if _, err := checkMountpoint(dir, true, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("allowed explicitly: %v", err)
	}
	var cfg Config
	if _, err := applyMountOptions("nonempty,bucket=b", &cfg); err != nil || !cfg.AllowNonEmptyMountpoint {
		t.Fatalf("-o nonempty: %v, %+v", err, cfg.AllowNonEmptyMountpoint)
	}
}

func TestBindMountedMountpointAccepted(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to bind-mount")
	}
	dir := t.TempDir()
	if err := syscall.Mount(dir, dir, "", syscall.MS_BIND, ""); err != nil {
		t.Skipf("bind mount: %v", err)
	}
	defer syscall.Unmount(dir, syscall.MNT_DETACH)
	if _, err := checkMountpoint(dir, false, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("a bind-mounted media store: %v", err)
	}
	if err := refuseImportFromMount(dir); err != nil {
		t.Fatalf("import from a media store on its own mount: %v", err)
	}
}
