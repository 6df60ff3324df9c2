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
