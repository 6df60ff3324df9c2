package main

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"

	mediafs "github.com/s3mediafs/s3mediafs/fs"
)

// checkMountpoint refuses a mount point that does not exist, is not a
// directory, already has something mounted on it, or (unless allowed)
// holds files the mount would hide. A dead s3mediafs mount on it (its
// daemon killed) is detached first, so that a restart heals a crash.
func checkMountpoint(p string, allowNonEmpty bool, log *slog.Logger) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	if err := detachDeadMount(abs, log); err != nil {
		return "", err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("mount point: %w", err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("mount point %s is not a directory", abs)
	}
	// A bind mount or a disk of its own under the media store is fine (a
	// container gets its media store as a bind mount); a FUSE filesystem
	// on top means it is mounted already, by us or by another tool.
	fsType, err := topMountType(abs)
	if err != nil {
		return "", err
	}
	if strings.HasPrefix(fsType, "fuse") {
		return "", fmt.Errorf("mount point %s already has a filesystem mounted on it (%s)", abs, fsType)
	}
	if !allowNonEmpty {
		if err := refuseHiddenFiles(abs); err != nil {
			return "", err
		}
	}
	return abs, nil
}

// ourFSType is the type a mount of ours has in the mount table.
const ourFSType = "fuse.s3mediafs"

// livenessWait bounds the probe of a mount of ours: a live daemon answers
// a lookup at once; a dead connection answers ENOTCONN at once.
const livenessWait = 5 * time.Second

// detachDeadMount detaches the s3mediafs mounts at p whose daemon is gone
// (the kernel answers ENOTCONN on them), one log line each. It never
// touches a mount that answers, one that does not answer in time (a
// daemon that is slow, or whose connection another process keeps), or a
// filesystem of another kind: those are checkMountpoint's to refuse.
func detachDeadMount(p string, log *slog.Logger) error {
	for range 8 { // mounts stacked by repeated crashes, if any
		fsType, err := topMountType(p)
		if err != nil || fsType != ourFSType {
			return err
		}
		if !connectionGone(p) {
			return nil
		}
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil {
			return fmt.Errorf("mount point %s holds a dead s3mediafs mount (its daemon is gone) that could not be detached: %w", p, err)
		}
		log.Warn("a dead s3mediafs mount was left on the mount point (its daemon stopped without unmounting); detached it, mounting afresh", "mountpoint", p)
	}
	return nil
}

// connectionGone reports whether the FUSE mount at p has no daemon: a
// lookup of a name in it (not a stat of the root, which the kernel may
// answer from its cache) fails with ENOTCONN or ECONNABORTED.
func connectionGone(p string) bool {
	answer := make(chan error, 1)
	go func() {
		_, err := os.Lstat(filepath.Join(p, fmt.Sprintf(".s3mediafs-liveness-%d", time.Now().UnixNano())))
		answer <- err
	}()
	select {
	case err := <-answer:
		return errors.Is(err, syscall.ENOTCONN) || errors.Is(err, syscall.ECONNABORTED)
	case <-time.After(livenessWait):
		return false
	}
}

// refuseHiddenFiles fails when the mount point holds files: mounted over,
// they would vanish from Synapse's view and it would answer 404 for them.
// Empty directories (Synapse makes its trees ahead of time) are fine.
func refuseHiddenFiles(dir string) error {
	const maxCount, maxTime = 1_000_000, 5 * time.Second
	var files, bytes int64
	deadline := time.Now().Add(maxTime)
	capped := false
	err := filepath.WalkDir(dir, func(p string, d iofs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		files++
		if info, err := d.Info(); err == nil && info.Mode().IsRegular() {
			bytes += info.Size()
		}
		if files >= maxCount || time.Now().After(deadline) {
			capped = true
			return filepath.SkipAll
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("mount point %s: %w", dir, err)
	}
	if files == 0 {
		return nil
	}
	count := fmt.Sprintf("%d files (%s)", files, humanize.IBytes(uint64(bytes)))
	if capped {
		count = "at least " + count
	}
	return fmt.Errorf("mount point %s holds %s that the mount would hide from Synapse: "+
		"run `s3mediafs import --from %s` (with this configuration) to move them to S3 first, "+
		"or set allow_non_empty_mountpoint: true (-o nonempty) to mount over them anyway", dir, count, dir)
}

// topMountType returns the type of the filesystem on top at p ("" when
// nothing is mounted there).
func topMountType(p string) (string, error) {
	m, err := mediafs.MountAt(p)
	return m.Type, err
}

// ownerOf returns the owner of the mount point, which files of the mount
// take by default so that Synapse (which owns its media directory) can write.
func ownerOf(p string) (uint32, uint32, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		return 0, 0, fmt.Errorf("mount point: %w", err)
	}
	return st.Uid, st.Gid, nil
}
