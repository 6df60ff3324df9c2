// Owners, modes and times as the mount shows them, the root's kept
// attributes, and sizes too big.

package fs

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/cache"
	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

func lstatT(t *testing.T, p string) *syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	return &st
}

// Zero is an owner (root) and a mode (0000) like any other: neither is
// replaced by the mount's defaults.
func TestZeroOwnerAndModeShow(t *testing.T) {
	mnt, _, _ := testMountWith(t, cache.Options{Store: objstore.NewMem()}, Options{UID: 991, GID: 992, FileMode: 0o644, DirMode: 0o755})
	f := filepath.Join(mnt, "f")
	fd, err := syscall.Open(f, syscall.O_CREAT|syscall.O_WRONLY|syscall.O_EXCL, 0)
	if err != nil {
		t.Fatal(err)
	}
	syscall.Close(fd)
	if st := lstatT(t, f); st.Mode&0o7777 != 0 || st.Uid != 0 || st.Gid != 0 {
		t.Errorf("file made by root with mode 0: mode %o owner %d:%d, want 0 and 0:0", st.Mode&0o7777, st.Uid, st.Gid)
	}
	if err := os.Chown(f, 5, 6); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(f, 0, 0); err != nil {
		t.Fatal(err)
	}
	if st := lstatT(t, f); st.Uid != 0 || st.Gid != 0 {
		t.Errorf("chown back to root shows %d:%d", st.Uid, st.Gid)
	}
}

// Creating, removing or renaming a name changes its directory, so the
// directory's mtime and ctime move, as make(1) and rsync rely on.
func TestDirectoryTimesFollowItsEntries(t *testing.T) {
	mnt, _, _ := testMountWith(t, cache.Options{Store: objstore.NewMem()}, Options{})
	d := filepath.Join(mnt, "d")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	past := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	steps := []struct {
		what string
		do   func() error
	}{
		{"create", func() error { return os.WriteFile(filepath.Join(d, "a"), nil, 0o644) }},
		{"mkdir", func() error { return os.Mkdir(filepath.Join(d, "sub"), 0o755) }},
		{"mkfifo", func() error { return syscall.Mkfifo(filepath.Join(d, "p"), 0o644) }},
		{"symlink", func() error { return os.Symlink("a", filepath.Join(d, "l")) }},
		{"rename", func() error { return os.Rename(filepath.Join(d, "a"), filepath.Join(d, "b")) }},
		{"unlink", func() error { return os.Remove(filepath.Join(d, "b")) }},
		{"rmdir", func() error { return os.Remove(filepath.Join(d, "sub")) }},
	}
	for _, s := range steps {
		if err := os.Chtimes(d, past, past); err != nil {
			t.Fatal(err)
		}
		before := lstatT(t, d)
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.what, err)
		}
		after := lstatT(t, d)
		if after.Mtim.Sec == past.Unix() {
			t.Errorf("%s did not move the directory's mtime", s.what)
		}
		if after.Ctim == before.Ctim {
			t.Errorf("%s did not move the directory's ctime", s.what)
		}
	}
}

// A write through an open file moves its ctime with its mtime, as fstat
// and stat both show.
func TestWriteMovesChangeTime(t *testing.T) {
	mnt, _, _ := testMountWith(t, cache.Options{Store: objstore.NewMem()}, Options{})
	p := filepath.Join(mnt, "f")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	past := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := os.Chtimes(p, past, past); err != nil {
		t.Fatal(err)
	}
	before := lstatT(t, p).Ctim
	time.Sleep(20 * time.Millisecond)
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(123); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	if st.Ctim == before || st.Ctim.Nano() < st.Mtim.Nano() {
		t.Errorf("ftruncate left ctime %v (mtime %v, before %v)", st.Ctim, st.Mtim, before)
	}
}

// A size no disk could hold is EFBIG (retrying cannot help), not ENOSPC,
// and leaves the file as it was.
func TestImpossibleSizeIsTooBig(t *testing.T) {
	mnt, _, _ := testMountWith(t, cache.Options{Store: objstore.NewMem()}, Options{})
	p := filepath.Join(mnt, "f")
	if err := os.WriteFile(p, []byte("abc"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, 999999999999999); !errors.Is(err, syscall.EFBIG) {
		t.Errorf("truncate to ~1 PB: %v, want EFBIG", err)
	}
	if st := lstatT(t, p); st.Size != 3 {
		t.Errorf("size %d after a refused truncate", st.Size)
	}
}

// The mount root's owner, mode and times are its own, and survive a
// remount.
func TestRootAttributesAreKept(t *testing.T) {
	dir := t.TempDir()
	mem := objstore.NewMem()
	when := time.Date(2010, 1, 2, 3, 4, 5, 0, time.UTC)
	// The first mount's cleanups (unmount, close) run at the end of its
	// subtest.
	t.Run("set", func(t *testing.T) {
		mnt, _, _ := testMountWith(t, cache.Options{Store: mem, Dir: dir}, Options{})
		if err := os.Chown(mnt, 7, 8); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Chmod(mnt, 0o1750); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(mnt, when, when); err != nil {
			t.Fatal(err)
		}
	})
	mnt, _, _ := testMountWith(t, cache.Options{Store: mem, Dir: dir}, Options{})
	st := lstatT(t, mnt)
	if st.Uid != 7 || st.Gid != 8 || st.Mode&0o7777 != 0o1750 || st.Mtim.Sec != when.Unix() {
		t.Errorf("root after a remount: %d:%d mode %o mtime %d", st.Uid, st.Gid, st.Mode&0o7777, st.Mtim.Sec)
	}
}
