// What Synapse's traffic costs in store requests: one PUT per file written,
// none for a warm hit.

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/fs/mounttest"
	"github.com/s3mediafs/s3mediafs/s3/s3test"
)

// TestSynapseWritesCostOnePutEach: media written the Synapse way, each in
// directories of its own made for it, over longer than negative_cache_ttl,
// cost S3 one PUT each and no LIST: the names missing from directories
// this host made are absent without asking (made_dir_trust).
func TestSynapseWritesCostOnePutEach(t *testing.T) {
	_, srv, bucket := s3test.Bucket(t, "synapse/")
	proxy, cfg, d := startThroughProxy(t, srv, bucket, "negative_cache_ttl: 100ms\n")
	mnt := d.mnt
	defer d.terminate(t)
	rnd := rand.New(rand.NewPCG(3, 3))
	const media = 120
	start := time.Now()
	for i := range media {
		id := fmt.Sprintf("%016x", rnd.Uint64())
		mounttest.MustWriteLikeSynapse(t, filepath.Join(mnt, "local_content", id[:2], id[2:4], id[4:]), payload(2000, i))
		if i%40 == 39 {
			time.Sleep(150 * time.Millisecond) // past negative_cache_ttl
		}
	}
	flushed(t, cfg, 60*time.Second)
	ops := opsOf(proxy)
	total := 0
	for _, n := range ops {
		total += n
	}
	t.Logf("%d media in %v: requests %v", media, time.Since(start).Round(time.Millisecond), ops)
	if ops["PutObject"] != media || float64(total) > 1.05*media {
		t.Fatalf("requests for %d written media: %v, want one PUT each and at most %.0f in all", media, ops, 1.05*media)
	}
}

// TestWarmHitWaitsForNoStoreRequest: with the store half a second away, a
// cached file due for revalidation opens and reads at local speed; the
// HEAD runs behind the lookup, and another host's delete shows after it.
func TestWarmHitWaitsForNoStoreRequest(t *testing.T) {
	client, srv, bucket := s3test.Bucket(t, "synapse/")
	proxy, cfg, d := startThroughProxy(t, srv, bucket, "revalidate_after: 100ms\nentry_timeout: 50ms\nattr_timeout: 50ms\nnegative_cache_ttl: 50ms\n")
	mnt := d.mnt
	defer d.terminate(t)
	p := filepath.Join(mnt, "local_content/ab/cd/media")
	want := payload(30_000, 1)
	mounttest.MustWriteLikeSynapse(t, p, want)
	flushed(t, cfg, 30*time.Second)
	proxy.SetFaults(s3test.Faults{Delay: 500 * time.Millisecond}, 1)
	time.Sleep(200 * time.Millisecond) // past revalidate_after and the kernel's timeouts
	t0 := time.Now()
	got, err := os.ReadFile(p)
	took := time.Since(t0)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("warm read: %d bytes, %v", len(got), err)
	}
	if took > 300*time.Millisecond {
		t.Fatalf("a warm read took %v with the store 500 ms away: it waited for the store", took)
	}
	if err := client.Delete(context.Background(), "local_content/ab/cd/media"); err != nil { // another host
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "another host's delete to show", func() bool {
		_, err := os.Stat(p)
		return errors.Is(err, os.ErrNotExist)
	})
}

// TestColdPurgeAsksOncePerTree: media written through one mount are
// purged, as Synapse purges them, through a mount on an empty cache that
// never saw them (another host, or a restart that lost the cache): the
// lookups on the purge's path are answered from one listing of the tree,
// with no HEAD, and the deletes go out in DeleteObjects batches.
func TestColdPurgeAsksOncePerTree(t *testing.T) {
	client, srv, bucket := s3test.Bucket(t, "synapse/")
	proxy, cfg, d := startThroughProxy(t, srv, bucket, "")
	rnd := rand.New(rand.NewPCG(4, 4))
	const media = 150
	var paths []string
	for i := range media {
		id := fmt.Sprintf("%016x", rnd.Uint64())
		p := filepath.Join("local_content", id[:2], id[2:4], id[4:])
		mounttest.MustWriteLikeSynapse(t, filepath.Join(d.mnt, p), payload(6000, i))
		paths = append(paths, p)
	}
	flushed(t, cfg, 60*time.Second)
	d.terminate(t)

	cfg2 := config(t, srv, proxy.URL, bucket, t.TempDir(), "")
	d2 := start(t, cfg2, t.TempDir())
	defer d2.terminate(t)
	proxy.Reset()
	for _, p := range paths {
		full := filepath.Join(d2.mnt, p)
		if err := os.Remove(full); err != nil {
			t.Fatal(err)
		}
		for dir := filepath.Dir(full); dir != d2.mnt; dir = filepath.Dir(dir) {
			if os.Remove(dir) != nil {
				break
			}
		}
	}
	onPath := opsOf(proxy)
	flushed(t, cfg2, 60*time.Second)
	all := opsOf(proxy)
	if onPath["HeadObject"] != 0 || onPath["GetObject"] != 0 || onPath["ListObjects"] > 3 {
		t.Errorf("the purge's path asked the store %v; want a LIST or so per tree and nothing per media", onPath)
	}
	// The keys deleted: each media's, and the folder key of each
	// directory removed. Folder deletes wait for the deletes below them,
	// so the batches come in rounds whose number depends on timing; two
	// keys a request on average is batching, one a key is not.
	keys := map[string]bool{}
	for _, p := range paths {
		keys[p] = true
		for dir := filepath.Dir(p); dir != "."; dir = filepath.Dir(dir) {
			keys[dir+"/"] = true
		}
	}
	t.Logf("cold purge of %d media (%d keys): on its path %v, in all %v", media, len(keys), onPath, all)
	if all["DeleteObject"] != 0 || all["DeleteObjects"] == 0 || all["DeleteObjects"] > len(keys)/2 {
		t.Errorf("deletes: %d DELETEs, %d DeleteObjects for %d keys; want batches only, of two keys or more on average",
			all["DeleteObject"], all["DeleteObjects"], len(keys))
	}
	if left := keysUnder(t, client, ""); len(left) != 0 {
		t.Errorf("%d keys left after the purge: %v", len(left), left[:min(len(left), 5)])
	}
}

// TestColdReadIsOneGetEach: media this host never held (a restart on an
// empty cache), read the way Synapse serves a download (stat, then open
// and read), cost one GET each, and no HEAD, up to fetch_ahead_max (4 MiB
// by default): the stat takes the metadata from the GET's headers.
func TestColdReadIsOneGetEach(t *testing.T) {
	_, srv, bucket := s3test.Bucket(t, "synapse/")
	proxy, cfg, d := startThroughProxy(t, srv, bucket, "")
	sizes := []int{3_000, 40_000, 700_000, 3 << 20}
	var paths []string
	for i, n := range sizes {
		p := filepath.Join("local_content", fmt.Sprintf("c%d", i), "de", "media")
		mounttest.MustWriteLikeSynapse(t, filepath.Join(d.mnt, p), payload(n, i))
		// A mode no default gives: the stat must have read the metadata.
		if err := os.Chmod(filepath.Join(d.mnt, p), 0o604); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	flushed(t, cfg, 60*time.Second)
	d.terminate(t)

	d2 := start(t, config(t, srv, proxy.URL, bucket, t.TempDir(), ""), t.TempDir())
	defer d2.terminate(t)
	if _, err := os.Stat(filepath.Join(d2.mnt, "local_content")); err != nil {
		t.Fatal(err)
	}
	for i, p := range paths {
		full := filepath.Join(d2.mnt, p)
		before := opsOf(proxy)
		fi, err := os.Stat(full)
		if err != nil || fi.Size() != int64(sizes[i]) || fi.Mode().Perm() != 0o604 {
			t.Fatalf("stat %s: %v, %v", p, fi, err)
		}
		got, err := os.ReadFile(full)
		if err != nil || !bytes.Equal(got, payload(sizes[i], i)) {
			t.Fatalf("cold read of %s: %d bytes, %v", p, len(got), err)
		}
		after := opsOf(proxy)
		if gets, heads := after["GetObject"]-before["GetObject"], after["HeadObject"]-before["HeadObject"]; gets != 1 || heads != 0 {
			t.Errorf("a cold read of %d bytes: %d GETs and %d HEADs, want one GET", sizes[i], gets, heads)
		}
	}
}
