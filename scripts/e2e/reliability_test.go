// A crash loop, a store outage and a flaky store lose nothing.

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/fs/mounttest"

	"github.com/s3mediafs/s3mediafs/s3"
	"github.com/s3mediafs/s3mediafs/s3/s3test"
)

// envInt reads a scenario size from the environment, for longer soaks.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// ledger records what a writer was told: files whose close() returned and
// files whose remove returned. Contents are regenerated from a seed.
type ledger struct {
	mu      sync.Mutex
	closed  map[string]fileSpec
	removed map[string]bool
}

type fileSpec struct {
	size int
	seed int
}

func newLedger() *ledger { return &ledger{closed: map[string]fileSpec{}, removed: map[string]bool{}} }

func (l *ledger) wrote(p string, f fileSpec) {
	l.mu.Lock()
	l.closed[p] = f
	l.mu.Unlock()
}

func (l *ledger) uncertain(p string) {
	l.mu.Lock()
	delete(l.closed, p)
	l.mu.Unlock()
}

func (l *ledger) gone(p string) {
	l.mu.Lock()
	delete(l.closed, p)
	l.removed[p] = true
	l.mu.Unlock()
}

// synapseLoad writes and removes files under mnt until stop closes or the
// mount fails, recording what succeeded. Every tenth file is large enough
// for a multipart upload.
func synapseLoad(mnt string, led *ledger, round int, rnd *rand.Rand, stop <-chan struct{}) int {
	ops := 0
	var mine []string
	for i := 0; ; i++ {
		select {
		case <-stop:
			return ops
		default:
		}
		rel := fmt.Sprintf("local_content/r%02d/%02d/f%05d", round, i%4, i)
		size := 20_000 + rnd.IntN(180_000)
		if i%10 == 9 {
			size = 6<<20 + rnd.IntN(1<<20)
		}
		spec := fileSpec{size: size, seed: round*100000 + i}
		if err := mounttest.WriteLikeSynapse(filepath.Join(mnt, rel), payload(spec.size, spec.seed)); err != nil {
			return ops // the daemon died under us; this file's fate is unknown
		}
		led.wrote(rel, spec)
		if i%7 == 3 {
			// cp -p and rsync -a set times into the past; the orphan sweep
			// after each kill must not take such a file for garbage.
			past := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
			if err := os.Chtimes(filepath.Join(mnt, rel), past, past); err != nil {
				return ops
			}
		}
		mine = append(mine, rel)
		ops++
		if i%5 == 4 && len(mine) > 1 {
			victim := mine[rnd.IntN(len(mine)-1)]
			err := os.Remove(filepath.Join(mnt, victim))
			switch {
			case err == nil:
				led.gone(victim)
				ops++
			case errors.Is(err, os.ErrNotExist):
			default:
				// The daemon died during the remove: it may or may not
				// have happened, so the file is neither owed nor gone.
				led.uncertain(victim)
				return ops
			}
		}
	}
}

// verifyLedger checks, through a fresh mount with an empty cache and
// directly in S3, that every closed file is there byte for byte and no
// removed file is.
func verifyLedger(t *testing.T, client *s3.Client, srv s3test.Server, bucket string, led *ledger) {
	t.Helper()
	mnt := t.TempDir()
	d := start(t, config(t, srv, "", bucket, t.TempDir(), ""), mnt)
	for p, spec := range led.closed {
		want := payload(spec.size, spec.seed)
		got, ok := object(t, client, p)
		if !ok || !bytes.Equal(got, want) {
			t.Errorf("LOST: %s (in S3: %v, %d of %d bytes)", p, ok, len(got), len(want))
			continue
		}
		if got, err := os.ReadFile(filepath.Join(mnt, p)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s unreadable through a fresh mount: %v", p, err)
		}
	}
	for p := range led.removed {
		if _, ok := object(t, client, p); ok {
			t.Errorf("RESURRECTED: %s is in S3 after its remove returned", p)
		}
	}
	if open, err := client.MultipartUploads(context.Background()); err != nil || len(open) != 0 {
		t.Errorf("unfinished multipart uploads left: %v %v", open, err)
	}
	d.terminate(t)
}

// TestCrashLoop: the Synapse pattern against the real daemon, SIGKILLed at
// random moments (during writes, uploads, multipart uploads, deletes and
// eviction), restarted each time. At the end nothing whose close()
// returned is lost and nothing removed is in S3.
func TestCrashLoop(t *testing.T) {
	kills := envInt("S3MEDIAFS_CRASH_KILLS", 20)
	client, srv, bucket := s3test.Bucket(t, "synapse/")
	proxy := s3test.NewProxy(t, srv.Endpoint)
	proxy.SetFaults(s3test.Faults{Delay: 5 * time.Millisecond}, 1) // uploads in flight when the kill comes
	cfg := config(t, srv, proxy.URL, bucket, t.TempDir(),
		"multipart_threshold: 5MiB\nmultipart_chunksize: 5MiB\ncache_max_size: 24MiB\nupload_concurrency: 4\n"+os.Getenv("S3MEDIAFS_CRASH_EXTRA"))
	mnt := t.TempDir()
	led := newLedger()
	rnd := rand.New(rand.NewPCG(uint64(kills), 7))
	ops := 0
	for round := range kills {
		d := start(t, cfg, mnt)
		stop := make(chan struct{})
		done := make(chan int)
		go func() { done <- synapseLoad(mnt, led, round, rand.New(rand.NewPCG(uint64(round), 1)), stop) }()
		time.Sleep(time.Duration(200+rnd.IntN(1300)) * time.Millisecond)
		d.killOnly()
		close(stop)
		ops += <-done
		unmount(mnt)
	}
	d := start(t, cfg, mnt)
	flushed(t, cfg, 180*time.Second)
	d.terminate(t)
	t.Logf("crash loop: %d kills, %d operations, %d files closed, %d removed", kills, ops, len(led.closed), len(led.removed))
	verifyLedger(t, client, srv, bucket, led)
}

// TestStoreOutageWithRealDaemon: the store goes away (blackholed, then
// refusing connections) while writes go on. No write fails, cached reads
// work, uncached reads fail with EIO in bounded time, and everything
// reaches S3 once the store is back.
func TestStoreOutageWithRealDaemon(t *testing.T) {
	outage := time.Duration(envInt("S3MEDIAFS_OUTAGE_SECS", 10)) * time.Second
	client, srv, bucket := s3test.Bucket(t, "synapse/")
	uncached := payload(300_000, 99)
	if err := client.Put(context.Background(), "remote_content/o/aa/bb/uncached", bytes.NewReader(uncached), int64(len(uncached)), nil); err != nil {
		t.Fatal(err)
	}
	// The stat below makes the name known; with fetch ahead off it
	// leaves the bytes in S3 alone, as a stat of a file over
	// fetch_ahead_max does.
	proxy, cfg, d := startThroughProxy(t, srv, bucket, "fetch_ahead_max: 0\n")
	mnt := d.mnt
	led := newLedger()
	cached := "local_content/oo/aa/cached"
	if err := mounttest.WriteLikeSynapse(filepath.Join(mnt, cached), payload(50_000, 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "remote_content/o/aa/bb/uncached")); err != nil {
		t.Fatal(err)
	}
	flushed(t, cfg, 30*time.Second)

	end := time.Now().Add(outage)
	proxy.SetFaults(s3test.Faults{Blackhole: true}, 1)
	// An uncached read fails with EIO in bounded time, not a hang.
	readErr := make(chan error, 1)
	go func() {
		start := time.Now()
		_, err := os.ReadFile(filepath.Join(mnt, "remote_content/o/aa/bb/uncached"))
		if !errors.Is(err, syscall.EIO) {
			readErr <- fmt.Errorf("uncached read during the outage: %v, want EIO", err)
			return
		}
		if took := time.Since(start); took > 20*time.Second {
			readErr <- fmt.Errorf("uncached read took %v to fail", took)
			return
		}
		readErr <- nil
	}()
	writes := 0
	var slowest time.Duration
	for i := 0; time.Now().Before(end); i++ {
		if time.Until(end) < outage/2 {
			proxy.SetFaults(s3test.Faults{Down: true}, 1)
		}
		rel := fmt.Sprintf("local_content/oo/bb/w%04d", i)
		spec := fileSpec{size: 30_000 + i*100, seed: 1000 + i}
		wstart := time.Now()
		if err := mounttest.WriteLikeSynapse(filepath.Join(mnt, rel), payload(spec.size, spec.seed)); err != nil {
			t.Fatalf("write %d during the outage failed: %v", i, err)
		}
		if i > 0 {
			slowest = max(slowest, time.Since(wstart))
		}
		led.wrote(rel, spec)
		writes++
		if got, err := os.ReadFile(filepath.Join(mnt, cached)); err != nil || !bytes.Equal(got, payload(50_000, 1)) {
			t.Fatalf("cached read during the outage: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := <-readErr; err != nil {
		t.Fatal(err)
	}
	proxy.SetFaults(s3test.Faults{}, 1)
	flushed(t, cfg, 120*time.Second)
	if got, err := os.ReadFile(filepath.Join(mnt, "remote_content/o/aa/bb/uncached")); err != nil || !bytes.Equal(got, uncached) {
		t.Fatalf("uncached read after the outage: %v", err)
	}
	d.terminate(t)
	t.Logf("outage of %v: %d writes during it (the first waits lookup_timeout; the slowest other took %v), faults %v",
		outage, writes, slowest, proxy.Injected())
	verifyLedger(t, client, srv, bucket, led)
}

// TestFlakyStore: 10% of requests fail, 5% are reset mid-body and 10% of
// GET bodies are cut short, for the whole Synapse pattern. Nothing is lost
// or corrupted, and a cut body is never served as data.
func TestFlakyStore(t *testing.T) {
	files := envInt("S3MEDIAFS_FLAKY_FILES", 60)
	client, srv, bucket := s3test.Bucket(t, "synapse/")
	remote := map[string][]byte{}
	for i := range 20 {
		k := fmt.Sprintf("remote_content/f/aa/%02d/r", i)
		remote[k] = payload(100_000+i*7000, 500+i)
		if err := client.Put(context.Background(), k, bytes.NewReader(remote[k]), int64(len(remote[k])), nil); err != nil {
			t.Fatal(err)
		}
	}
	proxy := s3test.NewProxy(t, srv.Endpoint)
	proxy.SetFaults(s3test.Faults{ErrorRate: 0.10, ResetRate: 0.05, TruncateRate: 0.10}, 42)
	cfg := config(t, srv, proxy.URL, bucket, t.TempDir(), "")
	mnt := t.TempDir()
	d := start(t, cfg, mnt)
	led := newLedger()
	rnd := rand.New(rand.NewPCG(42, 42))
	stop := make(chan struct{})
	close(stop)
	for i := range files {
		rel := fmt.Sprintf("local_content/fl/%02d/f%04d", i%8, i)
		spec := fileSpec{size: 10_000 + rnd.IntN(200_000), seed: 2000 + i}
		if err := mounttest.WriteLikeSynapse(filepath.Join(mnt, rel), payload(spec.size, spec.seed)); err != nil {
			t.Fatalf("write with a flaky store: %v", err)
		}
		led.wrote(rel, spec)
	}
	// Reads of files only S3 has: right bytes or an error, never wrong data.
	served, failed := 0, 0
	for k, want := range remote {
		got, err := os.ReadFile(filepath.Join(mnt, k))
		switch {
		case err == nil && bytes.Equal(got, want):
			served++
		case err != nil:
			failed++
			t.Logf("uncached read of %s failed cleanly: %v", k, err)
		default:
			t.Fatalf("CORRUPT: %s served %d bytes that differ from the object", k, len(got))
		}
	}
	proxy.SetFaults(s3test.Faults{}, 1)
	flushed(t, cfg, 120*time.Second)
	d.terminate(t)
	t.Logf("flaky store: %d writes, %d uncached reads (%d served, %d failed cleanly), faults injected %v",
		files, len(remote), served, failed, proxy.Injected())
	verifyLedger(t, client, srv, bucket, led)
}
