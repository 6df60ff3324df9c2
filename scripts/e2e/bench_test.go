package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/fs/mounttest"

	"golang.org/x/sync/errgroup"

	"github.com/s3mediafs/s3mediafs/s3"
	"github.com/s3mediafs/s3mediafs/s3/s3test"
)

// mixFile is one file of the benchmark's media mix.
type mixFile struct {
	rel  string
	size int
}

// mediaMix is Synapse-like: many 20–200 kB images and thumbnails, some
// 1–5 MB, a few 20–50 MB. S3MEDIAFS_BENCH_SMALL scales it.
func mediaMix() []mixFile {
	small := envInt("S3MEDIAFS_BENCH_SMALL", 1000)
	rnd := rand.New(rand.NewPCG(7, 7))
	var out []mixFile
	for i := range small {
		out = append(out, mixFile{fmt.Sprintf("local_content/%02x/%02x/img%05d", i%97, i%89, i), 20_000 + rnd.IntN(180_000)})
	}
	for i := range max(small/50, 1) {
		out = append(out, mixFile{fmt.Sprintf("local_content/mm/%02d/med%04d", i%10, i), 1<<20 + rnd.IntN(4<<20)})
	}
	for i := range max(small/500, 1) {
		out = append(out, mixFile{fmt.Sprintf("remote_content/big.example/zz/%02d/vid%03d", i, i), 20<<20 + rnd.IntN(30<<20)})
	}
	return out
}

// writeMix writes the mix the Synapse way into root and returns the time
// taken and each file's latency.
func writeMix(b *testing.B, root string, mix []mixFile) (time.Duration, []time.Duration) {
	b.Helper()
	// Start with no dirty pages left by the run before, whose write-back
	// would otherwise throttle this one.
	syscall.Sync()
	lat := make([]time.Duration, len(mix))
	start := time.Now()
	for i, f := range mix {
		t0 := time.Now()
		if err := mounttest.WriteLikeSynapse(filepath.Join(root, f.rel), payload(f.size, i)); err != nil {
			b.Fatal(err)
		}
		lat[i] = time.Since(t0)
	}
	return time.Since(start), lat
}

func readMix(b *testing.B, root string, mix []mixFile) time.Duration {
	b.Helper()
	start := time.Now()
	for _, f := range mix {
		n, err := readAll(filepath.Join(root, f.rel))
		if err != nil || n != f.size {
			b.Fatalf("read %s: %d bytes, %v", f.rel, n, err)
		}
	}
	return time.Since(start)
}

func readAll(p string) (int, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n, err := io.Copy(io.Discard, f)
	return int(n), err
}

func p99(lat []time.Duration) time.Duration {
	s := sorted(lat)
	return s[len(s)*99/100]
}

func median(d []time.Duration) time.Duration {
	s := sorted(d)
	return s[len(s)/2]
}

func sorted(d []time.Duration) []time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s
}

func totalBytes(mix []mixFile) int64 {
	var n int64
	for _, f := range mix {
		n += int64(f.size)
	}
	return n
}

func dropPageCache(b *testing.B) {
	b.Helper()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
		b.Logf("cannot drop the page cache (%v); cold figures include it", err)
	}
}

// BenchmarkSynapseMix measures the mount against its baselines in one run,
// and reports each figure as a ratio to its baseline from the same run:
//
//	scripts/bench.sh    (or: go test -run XXX -bench SynapseMix -benchtime 1x ./scripts/e2e)
func BenchmarkSynapseMix(b *testing.B) {
	for range b.N {
		benchSynapseMix(b)
	}
}

func benchSynapseMix(b *testing.B) {
	mix := mediaMix()
	total := totalBytes(mix)
	mb := float64(total) / 1e6
	const conc = 8

	// Baseline: a plain local directory.
	plain := b.TempDir()
	plainWrite, plainLat := writeMix(b, plain, mix)
	plainRead := readMix(b, plain, mix)

	// The mount, through a counting proxy. The direct baselines go through
	// the same proxy, so that both sides pay the same hop.
	_, srv, bucket := s3test.Bucket(b, "synapse/")
	proxy := s3test.NewProxy(b, srv.Endpoint)
	client := viaProxy(b, srv, proxy, bucket, "synapse/")
	cacheDir := b.TempDir()
	cfg := config(b, srv, proxy.URL, bucket, cacheDir, fmt.Sprintf("upload_concurrency: %d\nlog_level: info\n", conc))
	mnt := b.TempDir()
	d := start(b, cfg, mnt)
	proxy.Reset()
	mountWrite, mountLat := writeMix(b, mnt, mix)
	lastClose := time.Now()
	flushed(b, cfg, 600*time.Second)
	drain := time.Since(lastClose)
	ops := map[string]int{}
	for _, r := range proxy.Requests() {
		ops[r.Op()]++
	}
	mountRead := readMix(b, mnt, mix)

	// Purge: Synapse's delete pattern (remove, then rmdir up while empty)
	// over a set of small media written for it, on both sides.
	purgeSet := purgeMix(mix)
	writeMix(b, plain, purgeSet)
	writeMix(b, mnt, purgeSet)
	plainPurge := purge(b, plain, purgeSet)
	mountPurge := purge(b, mnt, purgeSet)

	// Baseline for the drain: the same files PUT directly, same concurrency.
	_, _, directBucket := s3test.Bucket(b, "")
	direct := viaProxy(b, srv, proxy, directBucket, "")
	putStart := time.Now()
	g := errgroup.Group{}
	g.SetLimit(conc)
	for i, f := range mix {
		g.Go(func() error {
			data := payload(f.size, i)
			return direct.Put(context.Background(), f.rel, bytes.NewReader(data), int64(len(data)), nil)
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	directPut := time.Since(putStart)

	// Cold reads: a new mount on a wiped cache, page cache dropped. Time to
	// first byte of small files and MB/s of the large ones, against direct
	// GETs of the same objects with the same SDK.
	d.terminate(b)
	d2 := start(b, config(b, srv, proxy.URL, bucket, b.TempDir(), "log_level: info\n"), mnt)
	dropPageCache(b)
	var small, large []mixFile
	for _, f := range mix {
		if f.size < 1<<20 {
			small = append(small, f)
		} else if f.size >= 20<<20 {
			large = append(large, f)
		}
	}
	small = small[:min(len(small), 100)]
	proxy.Reset()
	ttfbMount := timeFirstByte(b, small, func(f mixFile) (io.ReadCloser, error) { return os.Open(filepath.Join(mnt, f.rel)) })
	coldOps := map[string]int{}
	for _, r := range proxy.Requests() {
		coldOps[r.Op()]++
	}
	ttfbDirect := timeFirstByte(b, small, func(f mixFile) (io.ReadCloser, error) {
		body, _, err := client.Get(context.Background(), f.rel, 0, -1)
		return body, err
	})
	largeBytes := float64(totalBytes(large))
	t0 := time.Now()
	for _, f := range large {
		if n, err := readAll(filepath.Join(mnt, f.rel)); err != nil || n != f.size {
			b.Fatalf("cold read %s: %v", f.rel, err)
		}
	}
	coldMount := time.Since(t0)
	t0 = time.Now()
	for _, f := range large {
		body, _, err := client.Get(context.Background(), f.rel, 0, -1)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, body)
		body.Close()
	}
	coldDirect := time.Since(t0)
	d2.terminate(b)

	// One 1 GiB sequential write and read.
	big := envInt("S3MEDIAFS_BENCH_SEQ_MB", 1024)
	cfg3 := config(b, srv, proxy.URL, bucket, b.TempDir(), "log_level: info\n")
	d3 := start(b, cfg3, mnt)
	// The write-back of the page cache makes single runs noisy: plain and
	// mount alternate three times and the medians are compared.
	var pw, pr, mw, mr []time.Duration
	for range 3 {
		w, r := seqWriteRead(b, filepath.Join(plain, "seq"), big, func() {})
		pw, pr = append(pw, w), append(pr, r)
		// The read waits for the upload: on this one machine the local S3
		// server writing the object would otherwise compete with it for
		// the same disk and cores, which a remote store does not.
		w, r = seqWriteRead(b, filepath.Join(mnt, "seq"), big, func() { flushed(b, cfg3, 600*time.Second) })
		mw, mr = append(mw, w), append(mr, r)
	}
	seqPlainW, seqPlainR, seqMountW, seqMountR := median(pw), median(pr), median(mw), median(mr)
	d3.terminate(b)

	n := float64(len(mix))
	b.ReportMetric(n/mountWrite.Seconds()/(n/plainWrite.Seconds()), "write_files/s_ratio")
	b.ReportMetric(plainRead.Seconds()/mountRead.Seconds(), "warm_read_MB/s_ratio")
	b.ReportMetric(float64(p99(mountLat))/float64(p99(plainLat)), "write_p99_latency_ratio")
	b.ReportMetric(plainPurge.Seconds()/mountPurge.Seconds(), "purge_media/s_ratio")
	b.ReportMetric(directPut.Seconds()/drain.Seconds(), "drain_vs_direct_PUT_ratio")
	b.ReportMetric(float64(ttfbMount)/float64(ttfbDirect), "cold_TTFB_ratio")
	b.ReportMetric(coldDirect.Seconds()/coldMount.Seconds(), "cold_large_MB/s_ratio")
	b.ReportMetric(seqPlainW.Seconds()/seqMountW.Seconds(), "seq_1GiB_write_ratio")
	b.ReportMetric(seqPlainR.Seconds()/seqMountR.Seconds(), "seq_1GiB_read_ratio")
	for _, op := range []string{"PutObject", "HeadObject", "ListObjects", "GetObject", "UploadPart"} {
		b.ReportMetric(float64(ops[op])/n, op+"/file")
	}
	coldRequests := 0
	for _, k := range coldOps {
		coldRequests += k
	}
	b.ReportMetric(float64(coldRequests)/float64(len(small)), "cold_read_requests/file")
	b.Logf("requests during the cold reads of %d small files: %v", len(small), coldOps)
	b.Logf("purge of %d media: plain %.0f media/s, mount %.0f media/s", len(purgeSet),
		float64(len(purgeSet))/plainPurge.Seconds(), float64(len(purgeSet))/mountPurge.Seconds())
	b.Logf("mix: %d files, %.0f MB. plain write %.0f files/s, mount %.0f files/s; plain read %.0f MB/s, mount %.0f MB/s; "+
		"p99 write latency plain %v, mount %v; drain %v vs direct PUT %v; TTFB mount %v vs direct %v; large cold read mount %.0f MB/s vs direct %.0f MB/s; "+
		"seq write plain %.0f MB/s mount %.0f MB/s, seq read plain %.0f MB/s mount %.0f MB/s; requests during write+drain: %v",
		len(mix), mb, n/plainWrite.Seconds(), n/mountWrite.Seconds(), mb/plainRead.Seconds(), mb/mountRead.Seconds(),
		p99(plainLat), p99(mountLat), drain.Round(time.Millisecond), directPut.Round(time.Millisecond), ttfbMount, ttfbDirect,
		largeBytes/1e6/coldMount.Seconds(), largeBytes/1e6/coldDirect.Seconds(),
		float64(big)/seqPlainW.Seconds(), float64(big)/seqMountW.Seconds(), float64(big)/seqPlainR.Seconds(), float64(big)/seqMountR.Seconds(), ops)
}

// viaProxy is a client of bucket whose requests pass through proxy.
func viaProxy(b *testing.B, srv s3test.Server, proxy *s3test.Proxy, bucket, prefix string) *s3.Client {
	b.Helper()
	c, err := s3.New(context.Background(), srv.Config(bucket, prefix, proxy.URL), nil)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// purgeMix is the small files of mix under a tree of their own.
func purgeMix(mix []mixFile) []mixFile {
	var out []mixFile
	for _, f := range mix {
		if f.size < 1<<20 {
			out = append(out, mixFile{"purge/" + f.rel, f.size})
		}
	}
	return out
}

// purge removes every file of set as Synapse's purge does: unlink, then
// rmdir each parent up to the root while it is empty.
func purge(b *testing.B, root string, set []mixFile) time.Duration {
	b.Helper()
	start := time.Now()
	for _, f := range set {
		p := filepath.Join(root, f.rel)
		if err := os.Remove(p); err != nil {
			b.Fatal(err)
		}
		for d := filepath.Dir(p); d != root; d = filepath.Dir(d) {
			if os.Remove(d) != nil {
				break // not empty: stop climbing
			}
		}
	}
	return time.Since(start)
}

// timeFirstByte is the mean time from open to the first byte.
func timeFirstByte(b *testing.B, files []mixFile, open func(mixFile) (io.ReadCloser, error)) time.Duration {
	b.Helper()
	var total time.Duration
	buf := make([]byte, 1)
	for _, f := range files {
		t0 := time.Now()
		r, err := open(f)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(r, buf); err != nil {
			b.Fatal(err)
		}
		total += time.Since(t0)
		r.Close()
	}
	return total / time.Duration(len(files))
}

// seqWriteRead writes mb MiB in 1 MiB writes, calls settle, then reads it
// back with the page cache dropped.
func seqWriteRead(b *testing.B, p string, mb int, settle func()) (time.Duration, time.Duration) {
	b.Helper()
	chunk := payload(1<<20, 3)
	syscall.Sync()
	t0 := time.Now()
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	for range mb {
		if _, err := f.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	w := time.Since(t0)
	settle()
	dropPageCache(b)
	t0 = time.Now()
	if n, err := readAll(p); err != nil || n != mb<<20 {
		b.Fatalf("seq read: %d %v", n, err)
	}
	return w, time.Since(t0)
}
