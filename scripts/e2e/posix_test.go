// Owners, modes and times travel through the store; a kill during a
// directory rename.

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/fs/mounttest"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
	"github.com/s3mediafs/s3mediafs/s3"
	"github.com/s3mediafs/s3mediafs/s3/s3test"
)

// fileMeta is what stat shows of a file's owner, mode and mtime.
type fileMeta struct {
	uid, gid, mode uint32
	mtime          int64
}

func metaOf(t *testing.T, p string) fileMeta {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	return fileMeta{st.Uid, st.Gid, st.Mode & 0o7777, st.Mtim.Sec}
}

// keysUnder lists the store's keys below prefix.
func keysUnder(t *testing.T, c *s3.Client, prefix string) []string {
	t.Helper()
	var keys []string
	err := c.List(context.Background(), prefix, true, func(e objstore.Entry) bool {
		keys = append(keys, prefix+e.Name)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	return keys
}

// TestOwnersModesAndTimesTravel: chown, chmod and touch -d through the
// mount reach the object as s3fs-style metadata with one request and no
// upload, and show again after a wiped cache and on a second host.
func TestOwnersModesAndTimesTravel(t *testing.T) {
	client, srv, bucket := s3test.Bucket(t, "synapse/")
	proxy := s3test.NewProxy(t, srv.Endpoint)
	cacheDir, mnt := t.TempDir(), t.TempDir()
	cfg := config(t, srv, proxy.URL, bucket, cacheDir, "")
	d := start(t, cfg, mnt)
	p := "local_content/ow/nr/file"
	data := payload(70_000, 3)
	mounttest.MustWriteLikeSynapse(t, filepath.Join(mnt, p), data)
	flushed(t, cfg, 30*time.Second)

	f := filepath.Join(mnt, p)
	if err := os.Chown(f, 1234, 5678); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(f, 0o640); err != nil {
		t.Fatal(err)
	}
	flushed(t, cfg, 30*time.Second)
	// One change alone (touch -d) is one request, and no upload.
	proxy.Reset()
	when := time.Date(2020, 2, 3, 4, 5, 6, 0, time.UTC)
	if err := os.Chtimes(f, when, when); err != nil {
		t.Fatal(err)
	}
	want := fileMeta{1234, 5678, 0o640, when.Unix()}
	if got := metaOf(t, f); got != want {
		t.Fatalf("after chown, chmod, touch: %+v, want %+v", got, want)
	}
	flushed(t, cfg, 30*time.Second)
	var writes []string
	for _, r := range proxy.Requests() {
		if op := r.Op(); op != "HeadObject" && op != "GetObject" && op != "ListObjects" {
			writes = append(writes, op)
		}
	}
	if !slices.Equal(writes, []string{"CopyObject"}) {
		t.Errorf("a metadata change cost %v, want one CopyObject and no upload", writes)
	}
	o, err := client.Head(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	meta := o.Meta
	if meta["uid"] != "1234" || meta["gid"] != "5678" || meta["mode"] != "33184" || meta["mtime"] != "1580702706" {
		t.Errorf("object metadata %v, want s3fs's uid 1234 gid 5678 mode 33184 mtime 1580702706", meta)
	}
	if got, _ := object(t, client, p); !bytes.Equal(got, data) {
		t.Error("the object's bytes changed with its metadata")
	}
	d.terminate(t)

	if err := os.RemoveAll(cacheDir); err != nil {
		t.Fatal(err)
	}
	d2 := start(t, cfg, mnt)
	if got := metaOf(t, f); got != want {
		t.Errorf("after a wiped cache: %+v, want %+v", got, want)
	}
	mntB := t.TempDir()
	b := start(t, config(t, srv, "", bucket, t.TempDir(), ""), mntB)
	if got := metaOf(t, filepath.Join(mntB, p)); got != want {
		t.Errorf("on a second host: %+v, want %+v", got, want)
	}
	b.terminate(t)
	d2.terminate(t)
}

// TestKillDuringDirectoryRename: a directory renamed through the mount is
// seen at its new name at once; SIGKILL while its objects move in the
// store loses none, and after the restart each is at its new key only,
// with its bytes and metadata.
func TestKillDuringDirectoryRename(t *testing.T) {
	client, srv, bucket := s3test.Bucket(t, "synapse/")
	proxy := s3test.NewProxy(t, srv.Endpoint)
	cacheDir, mnt := t.TempDir(), t.TempDir()
	cfg := config(t, srv, proxy.URL, bucket, cacheDir, "")
	d := start(t, cfg, mnt)
	files := map[string][]byte{}
	for i := range 24 {
		name := fmt.Sprintf("%c%c/file%d", 'a'+i%3, 'a'+i%2, i)
		files[name] = payload(1000+i*4000, i)
		mounttest.MustWriteLikeSynapse(t, filepath.Join(mnt, "local_content/src", name), files[name])
	}
	owned := filepath.Join(mnt, "local_content/src/aa/file0")
	if err := os.Chown(owned, 4321, 8765); err != nil {
		t.Fatal(err)
	}
	flushed(t, cfg, 30*time.Second)

	// Let some copies through, then hold the rest until the kill.
	var copies atomic.Int32
	release := make(chan struct{})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	proxy.SetFail(func(r *http.Request) int {
		if r.Method == http.MethodPut && r.Header.Get("X-Amz-Copy-Source") != "" && copies.Add(1) > 9 {
			<-release
			return http.StatusServiceUnavailable
		}
		return 0
	})
	if err := os.Rename(filepath.Join(mnt, "local_content/src"), filepath.Join(mnt, "local_content/dst")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "local_content/src")); !os.IsNotExist(err) {
		t.Errorf("old name after rename: %v", err)
	}
	for name, data := range files {
		if got, err := os.ReadFile(filepath.Join(mnt, "local_content/dst", name)); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("dst/%s right after the rename: %v, %d bytes", name, err, len(got))
		}
	}
	eventually(t, 20*time.Second, "some copies", func() bool { return copies.Load() > 9 })
	d.kill()
	close(release)
	proxy.SetFail(nil)

	d2 := start(t, cfg, mnt)
	flushed(t, cfg, 60*time.Second)
	var want []string
	for name, data := range files {
		key := "local_content/dst/" + name
		want = append(want, key)
		if got, ok := object(t, client, key); !ok || !bytes.Equal(got, data) {
			t.Errorf("%s in the store: %v, %d bytes", key, ok, len(got))
		}
		if got, err := os.ReadFile(filepath.Join(mnt, "local_content/dst", name)); err != nil || !bytes.Equal(got, data) {
			t.Errorf("dst/%s after the restart: %v, %d bytes", name, err, len(got))
		}
	}
	slices.Sort(want)
	if got := keysUnder(t, client, "local_content/"); !slices.Equal(got, want) {
		var extra []string
		for _, k := range got {
			if !slices.Contains(want, k) {
				extra = append(extra, k)
			}
		}
		t.Errorf("store holds %d keys, want %d; not wanted: %s", len(got), len(want), strings.Join(extra, " "))
	}
	if got := metaOf(t, filepath.Join(mnt, "local_content/dst/aa/file0")); got.uid != 4321 || got.gid != 8765 {
		t.Errorf("owner after the move: %d:%d", got.uid, got.gid)
	}
	d2.terminate(t)
}
