package fs

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/cache"
	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// TestColdLookupLeavesMetadataToGetattr: a lookup of a file only the
// store has answers from its listing, without a HEAD for its owner and
// mode, and tells the kernel those attributes are not to be kept: an
// unlink of media this host never saw (a purge) then costs no request
// on its path, while anything that needs the owner or mode (a stat, the
// kernel's permission check before an open) gets them from the object.
func TestColdLookupLeavesMetadataToGetattr(t *testing.T) {
	mem := objstore.NewMem()
	secret := cache.ObjectMeta(1234, 1234, 0o600, time.Unix(1700000000, 0))
	open := cache.ObjectMeta(1234, 1234, 0o644, time.Unix(1700000000, 0))
	media := payload(5000, 1) // larger than any symlink's object
	mem.SetObjectMeta("media/ab/purged", media, secret)
	mem.SetObjectMeta("media/ab/secret", media, secret)
	mem.SetObjectMeta("media/ab/secret2", media, secret)
	mem.SetObjectMeta("media/ab/open", media, open)
	// A symlink, as s3fs and this mount store one: its type is in its
	// metadata, and the lookup must read it.
	mem.SetObjectMeta("media/ab/link", []byte("open"), map[string]string{"mode": strconv.Itoa(syscall.S_IFLNK | 0o777)})
	store := countRequests(mem)
	var headed sync.Map // keys HEAD was asked for
	countHead := store.BeforeHead
	store.BeforeHead = func(ctx context.Context, key string) error {
		headed.Store(key, true)
		return countHead(ctx, key)
	}
	mnt, c, _ := testMountFull(t, cache.Options{Store: store}, MountOptions{Options: Options{Passthrough: true}, AllowOther: true})

	// The directory's own lookup lists it; then the purge's unlink. (The
	// unlink may let the daemon ask about the small objects listed, the
	// symlink here, in the background: that is not on its path.)
	if _, err := os.ReadDir(filepath.Join(mnt, "media/ab")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(mnt, "media/ab/purged")); err != nil {
		t.Fatal(err)
	}
	if _, ok := headed.Load("media/ab/purged"); ok {
		t.Error("an unlink of a file never seen here sent a HEAD for it")
	}
	drain(t, c)
	if _, ok := mem.Object("media/ab/purged"); ok {
		t.Error("the unlinked object is still in the store")
	}

	if target, err := os.Readlink(filepath.Join(mnt, "media/ab/link")); err != nil || target != "open" {
		t.Errorf("cold symlink: %q, %v", target, err)
	}

	// A stat shows the object's owner and mode.
	fi, err := os.Stat(filepath.Join(mnt, "media/ab/secret"))
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o600 || st.Uid != 1234 || st.Gid != 1234 {
		t.Errorf("stat of a cold file: %v %d:%d, want -rw------- 1234:1234", fi.Mode(), st.Uid, st.Gid)
	}

	// Another user is refused a file its mode keeps from it, though the
	// lookup that found it had not read that mode; the open one reads.
	// (The test's directories are root's own: let that user through.)
	for d := filepath.Dir(mnt); len(d) >= len(testRoot); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		ok   bool
	}{{"media/ab/secret2", false}, {"media/ab/open", true}} {
		cmd := exec.Command("cat", filepath.Join(mnt, tc.name))
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if (err == nil) != tc.ok {
			t.Errorf("user nobody reading %s: %q, %v; want allowed %v", tc.name, out, err, tc.ok)
		}
	}
}

// TestColdReadIsOneRequest: a cold read of a small file (a thumbnail) in
// a directory already listed costs one GET: its response carries the
// metadata the kernel's permission check asks for, so no HEAD goes
// beside it.
func TestColdReadIsOneRequest(t *testing.T) {
	mem := objstore.NewMem()
	meta := cache.ObjectMeta(1234, 1234, 0o640, time.Unix(1700000000, 0))
	for _, name := range []string{"a", "b", "c"} {
		mem.SetObjectMeta("thumbs/ab/cd/"+name, payload(20000, name[0]), meta)
	}
	store := countRequests(mem)
	mnt, _ := testMountOpts(t, cache.Options{Store: store, FetchAheadMax: 256 << 10})
	if _, err := os.Stat(filepath.Join(mnt, "thumbs/ab/cd")); err != nil {
		t.Fatal(err)
	}
	gets, heads, lists := store.gets.Load(), store.heads.Load(), store.lists.Load()
	for _, name := range []string{"a", "b", "c"} {
		got, err := os.ReadFile(filepath.Join(mnt, "thumbs/ab/cd", name))
		if err != nil || len(got) != 20000 {
			t.Fatalf("cold read of %s: %d bytes, %v", name, len(got), err)
		}
	}
	if g, h, l := store.gets.Load()-gets, store.heads.Load()-heads, store.lists.Load()-lists; g != 3 || h != 0 || l != 0 {
		t.Errorf("3 cold reads: %d GETs, %d HEADs, %d LISTs; want 3, 0, 0", g, h, l)
	}
	fi, err := os.Stat(filepath.Join(mnt, "thumbs/ab/cd/b"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o640 || st.Uid != 1234 {
		t.Errorf("after a cold read: %v uid %d, want -rw-r----- 1234", fi.Mode(), st.Uid)
	}
}

// TestStickyDirectoryReadsTheOwnerAtLookup: in a sticky directory the
// kernel lets a user remove only its own names, judged on the owner it
// holds without asking again; a lookup there reads the object's owner,
// so the mount's default owner never stands in for it.
func TestStickyDirectoryReadsTheOwnerAtLookup(t *testing.T) {
	mem := objstore.NewMem()
	mem.SetObjectMeta("shared/theirs", payload(5000, 1), cache.ObjectMeta(1234, 1234, 0o644, time.Unix(1700000000, 0)))
	mem.SetObjectMeta("shared/keep", payload(10, 1), nil) // makes shared/ a directory
	// The mount's default owner is the user who tries the unlink.
	mnt, _, _ := testMountFull(t, cache.Options{Store: mem},
		MountOptions{Options: Options{Passthrough: true, UID: 65534, GID: 65534}, AllowOther: true})
	for d := filepath.Dir(mnt); len(d) >= len(testRoot); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(mnt, "shared") // root's, as /tmp is
	if err := os.Chown(dir, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Chmod(dir, 0o1777); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("unlink", filepath.Join(dir, "theirs")) // unlink(2) alone: no stat before it
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("user nobody removed uid 1234's file from a sticky directory: %s", out)
	}
	if _, ok := mem.Object("shared/theirs"); !ok {
		t.Error("the object is gone")
	}
}
