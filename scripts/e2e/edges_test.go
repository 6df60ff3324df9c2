// Edges an operator's homeserver meets, tried from outside: the real
// binary on a real mount over the real stores (versitygw and SeaweedFS),
// checked only through the mount and the bucket.

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/fs/mounttest"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
	"github.com/s3mediafs/s3mediafs/s3/s3test"
)

// TestPurgeLeavesNothingBehind: a bucket the old provider filled, purged
// through a fresh mount as Synapse's media retention does (remove the
// file, rmtree its thumbnails, rmdir each parent while empty). Nothing is
// left in the bucket, not even the empty folders SeaweedFS keeps; the
// rmdirs wait for no LIST, and their background checks cost a few.
func TestPurgeLeavesNothingBehind(t *testing.T) {
	const media = 60
	client, srv, bucket := s3test.Bucket(t, "synapse/")
	ctx := context.Background()
	var ids []string
	for i := range media {
		id := fmt.Sprintf("%c%cmedia%04d", 'a'+i%7, 'a'+i/7%7, i)
		ids = append(ids, id)
		for _, k := range []string{
			fmt.Sprintf("local_content/%s/%s/%s", id[:2], id[2:4], id[4:]),
			fmt.Sprintf("local_thumbnails/%s/%s/%s/32-32-image-png-crop", id[:2], id[2:4], id[4:]),
			fmt.Sprintf("local_thumbnails/%s/%s/%s/96-96-image-png-scale", id[:2], id[2:4], id[4:]),
		} {
			if err := client.Put(ctx, k, bytes.NewReader([]byte(k)), int64(len(k)), nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Other media, more than one LIST page of them, so that no lookup
	// learns a whole tree from the top: the purge's directories are known
	// only as a large store's are.
	var filler []string
	for i := range 1100 {
		filler = append(filler, fmt.Sprintf("local_content/zz/%02d/other%04d", i%50, i), fmt.Sprintf("local_thumbnails/zz/%02d/other%04d/32-32-image-png-crop", i%50, i))
	}
	sem := make(chan struct{}, 32)
	errs := make(chan error, len(filler))
	for _, k := range filler {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			errs <- client.Put(ctx, k, bytes.NewReader([]byte("x")), 1, nil)
		}()
	}
	for range filler {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// A large store's tree is more than list_ahead_keys can learn ahead;
	// here that is modelled by turning the read-ahead off.
	proxy, cfg, d := startThroughProxy(t, srv, bucket, "list_ahead_keys: 0\n")
	mnt := d.mnt
	defer d.terminate(t)

	// Synapse looks a media up, then purges it: remove the file, rmtree
	// its thumbnails (scandir, unlink each, rmdir, as Python's shutil
	// does), then rmdir the two levels above it (ab/cd, then ab), never
	// the tree itself. The lookups' LISTs are counted apart.
	listsSoFar := func() int { return opsOf(proxy)["ListObjects"] }
	lookups := 0
	var purgeLists []s3test.Request
	for _, id := range ids {
		rel := filepath.Join(id[:2], id[2:4], id[4:])
		proxy.Reset()
		for _, tree := range []string{"local_content", "local_thumbnails"} {
			os.Stat(filepath.Join(mnt, tree, rel))
		}
		lookups += listsSoFar()
		proxy.Reset()
		if err := os.Remove(filepath.Join(mnt, "local_content", rel)); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		thumbs := filepath.Join(mnt, "local_thumbnails", rel)
		names, err := os.ReadDir(thumbs)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range names {
			if err := os.Remove(filepath.Join(thumbs, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
		if err := syscall.Rmdir(thumbs); err != nil {
			t.Fatal(err)
		}
		for _, tree := range []string{"local_content", "local_thumbnails"} {
			for _, dir := range []string{filepath.Dir(rel), filepath.Dir(filepath.Dir(rel))} {
				err := syscall.Rmdir(filepath.Join(mnt, tree, dir))
				if errors.Is(err, syscall.ENOTEMPTY) {
					break
				}
				if err != nil {
					t.Fatalf("rmdir %s/%s: %v", tree, dir, err)
				}
			}
		}
		purgeLists = append(purgeLists, proxy.Requests()...)
	}
	// rmtree lists the thumbnails' directory (a delimiter); every other
	// LIST is an rmdir asking whether a directory is empty.
	lists, checks := 0, 0
	for _, r := range purgeLists {
		if r.Op() != "ListObjects" {
			continue
		}
		lists++
		q, _ := url.ParseQuery(r.Query)
		if !q.Has("delimiter") {
			checks++
		}
		if os.Getenv("S3MEDIAFS_E2E_SHOW_LISTS") != "" {
			t.Logf("LIST %s", r.Query)
		}
	}
	t.Logf("lookups of %d media: %d LISTs; their purge: %d LISTs (%.2f per media), %d of them for rmdir (%.2f per media)",
		media, lookups, lists, float64(lists)/media, checks, float64(checks)/media)
	if checks > 0 {
		t.Errorf("the purge's rmdirs waited for %d LISTs, want none: the index answers them", checks)
	}
	// The store is checked in the background, once the deletes landed,
	// in a few LISTs for the whole purge.
	proxy.Reset()
	flushed(t, cfg, 60*time.Second)
	var st map[string]any
	eventually(t, 30*time.Second, "the removed directories to be checked", func() bool {
		out, _ := cli(t, "status", "--json", "--socket", socketOf(t, cfg))
		st = nil
		return json.Unmarshal([]byte(out), &st) == nil && st["rmdir_checks_waiting"].(float64) == 0 && st["rmdir_checks"].(float64) > 0
	})
	if n := listsSoFar(); n > media/10 || st["rmdir_reappeared"].(float64) != 0 {
		t.Errorf("background checks of the purge: %d LISTs for %d media (want at most %d), %v reappeared", n, media, media/10, st["rmdir_reappeared"])
	}
	var left []string
	if err := client.List(ctx, "", true, func(e objstore.Entry) bool {
		left = append(left, e.Name)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	left = slices.DeleteFunc(left, func(k string) bool { return strings.Contains(k, "/zz/") })
	if len(left) > 0 {
		t.Fatalf("objects left after the purge: %v", left[:min(len(left), 10)])
	}
	// What a delimiter listing shows from the top (SeaweedFS's kept
	// folders are common prefixes): a directory is left only where
	// something of it is.
	var dirs []string
	var walk func(prefix string)
	walk = func(prefix string) {
		client.List(ctx, prefix, false, func(e objstore.Entry) bool {
			if e.Dir {
				dirs = append(dirs, prefix+e.Name+"/")
				walk(prefix + e.Name + "/")
			}
			return true
		})
	}
	walk("")
	dirs = slices.DeleteFunc(dirs, func(k string) bool { return strings.Contains(k, "/zz/") })
	slices.Sort(dirs)
	if want := []string{"local_content/", "local_content/zz/", "local_thumbnails/", "local_thumbnails/zz/"}; len(dirs) > len(want) {
		t.Errorf("folders left after the purge: %d, e.g. %v", len(dirs), dirs[:min(len(dirs), 10)])
	}
	entries, err := os.ReadDir(filepath.Join(mnt, "local_content"))
	if err != nil || len(entries) != 1 || entries[0].Name() != "zz" {
		t.Errorf("local_content through the mount after the purge: %v, %v", entries, err)
	}
}

// TestFileLargerThanTheCache: a media file larger than cache_max_size,
// written through the mount and read back once the cache was wiped, is
// read from S3 without being kept, and the cache keeps working.
func TestFileLargerThanTheCache(t *testing.T) {
	client, srv, bucket := s3test.Bucket(t, "synapse/")
	cfg := config(t, srv, "", bucket, t.TempDir(), "cache_max_size: 32MiB\n")
	mnt := t.TempDir()
	d := start(t, cfg, mnt)
	want := make([]byte, 48<<20)
	rand.Read(want)
	p := filepath.Join(mnt, "remote_content/example.org/ab/cd/video")
	mounttest.MustWriteLikeSynapse(t, p, want)
	flushed(t, cfg, 120*time.Second)
	d.terminate(t)

	cfg = config(t, srv, "", bucket, t.TempDir(), "cache_max_size: 32MiB\n") // a wiped cache
	d = start(t, cfg, mnt)
	defer d.terminate(t)
	start := time.Now()
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read of a file larger than the cache: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, not the %d written", len(got), len(want))
	}
	t.Logf("read 48 MiB through a 32 MiB cache in %v", time.Since(start))
	// A random read (Pillow seeks) of it works too.
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	if _, err := f.ReadAt(buf, 40<<20); err != nil || !bytes.Equal(buf, want[40<<20:40<<20+4096]) {
		t.Fatalf("read at 40 MiB: %v", err)
	}
	f.Close()
	small := filepath.Join(mnt, "local_content/ab/cd/small")
	mounttest.MustWriteLikeSynapse(t, small, []byte("still works"))
	if got, err := os.ReadFile(small); err != nil || string(got) != "still works" {
		t.Fatalf("a small file after the big read: %q, %v", got, err)
	}
	if _, ok := object(t, client, "remote_content/example.org/ab/cd/video"); !ok {
		t.Fatal("the big file left the bucket")
	}
}

// TestHugeDirectoryThroughTheMount: a directory of 30,000 objects that
// another host put in the bucket lists through the mount, completely
// (the index records a listing a page at a time).
func TestHugeDirectoryThroughTheMount(t *testing.T) {
	n := envInt("S3MEDIAFS_E2E_HUGE_DIR", 30_000)
	client, srv, bucket := s3test.Bucket(t, "synapse/")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	began := time.Now()
	sem := make(chan struct{}, 32)
	errs := make(chan error, n)
	for i := range n {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			errs <- client.Put(ctx, fmt.Sprintf("remote_content/big.example/%06d", i), bytes.NewReader([]byte{1}), 1, nil)
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d objects put in %v", n, time.Since(began))
	began = time.Now()
	if err := client.List(ctx, "remote_content/big.example/", false, func(objstore.Entry) bool { return true }); err != nil {
		t.Fatal(err)
	}
	t.Logf("the store lists them in %v", time.Since(began))
	cfg := config(t, srv, "", bucket, t.TempDir(), "")
	mnt := t.TempDir()
	d := start(t, cfg, mnt)
	defer d.terminate(t)
	for range 2 {
		began := time.Now()
		entries, err := os.ReadDir(filepath.Join(mnt, "remote_content/big.example"))
		t.Logf("readdir of %d names through the mount: %v", n, time.Since(began))
		if err != nil {
			t.Fatalf("readdir of %d names: %v", n, err)
		}
		if len(entries) != n {
			t.Fatalf("readdir returned %d names, want %d", len(entries), n)
		}
	}
}

// TestRmdirAnotherHostsDir: rmdir answers
// from the index, so a directory another host wrote into behind this
// mount's back can be removed here; the background check finds that
// host's file in S3, keeps it, and the directory shows again.
func TestRmdirAnotherHostsDir(t *testing.T) {
	client, srv, bucket := s3test.Bucket(t, "synapse/")
	ctx := context.Background()
	put := func(k string) {
		t.Helper()
		if err := client.Put(ctx, k, bytes.NewReader([]byte(k)), int64(len(k)), nil); err != nil {
			t.Fatal(err)
		}
	}
	put("local_content/ab/cd/mine")
	put("local_content/zz/other") // keeps local_content/ from being learned whole
	// What lookups learn is trusted for short, so that only S3 can say
	// what lies below the directory by the time it is removed.
	cfg := config(t, srv, "", bucket, t.TempDir(), "negative_cache_ttl: 100ms\nrevalidate_after: 100ms\n")
	mnt := t.TempDir()
	d := start(t, cfg, mnt)
	defer d.terminate(t)
	dir := filepath.Join(mnt, "local_content/ab/cd")
	if _, err := os.Stat(filepath.Join(dir, "mine")); err != nil {
		t.Fatal(err)
	}
	put("local_content/ab/cd/theirs")  // another host, sharing the bucket
	time.Sleep(200 * time.Millisecond) // what the lookup learned expires
	if err := os.Remove(filepath.Join(dir, "mine")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Rmdir(dir); err != nil {
		t.Fatalf("rmdir of a directory empty in the index: %v", err)
	}
	eventually(t, 30*time.Second, "the check to bring the directory back", func() bool {
		out, _ := cli(t, "status", "--json", "--socket", socketOf(t, cfg))
		var st map[string]any
		return json.Unmarshal([]byte(out), &st) == nil && st["rmdir_reappeared"].(float64) == 1
	})
	got, err := os.ReadFile(filepath.Join(dir, "theirs"))
	if err != nil || string(got) != "local_content/ab/cd/theirs" {
		t.Fatalf("another host's file after the rmdir: %q, %v", got, err)
	}
	if _, ok := object(t, client, "local_content/ab/cd/mine"); ok {
		t.Fatal("the removed file is still in S3")
	}
}
