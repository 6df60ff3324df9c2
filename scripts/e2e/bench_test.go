// Benchmarks of the real binary: the Synapse mix and a 1 GiB sequential
// file, each against a baseline of the same run.

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/s3mediafs/s3mediafs/s3"
	"github.com/s3mediafs/s3mediafs/s3/s3test"
)

// BenchmarkSynapseMix measures the mount against its baselines in one run,
// and reports each figure as a ratio to its baseline from the same run: a
// plain local directory, the FUSE floor over one (floorMount), rclone
// mount where it is installed (write speed and CPU, at 0 ms), and direct
// SDK requests through the same proxy. Two mixes: bytes mostly in
// large files (media), and the thumbnail-heavy one a homeserver stores
// (thumbs), the latter also with 20 ms added before every store request,
// as a store in another building or region adds:
//
//	scripts/bench.sh    (or: go test -run XXX -bench SynapseMix -benchtime 1x ./scripts/e2e)
func BenchmarkSynapseMix(b *testing.B) {
	for _, c := range []struct {
		name  string
		mix   func() []mixFile
		delay time.Duration
	}{
		{"media/0ms", mediaMix, 0},
		{"thumbs/0ms", thumbnailMix, 0},
		{"thumbs/20ms", thumbnailMix, 20 * time.Millisecond},
	} {
		b.Run(c.name, func(b *testing.B) {
			for range b.N {
				benchMix(b, c.mix(), c.delay)
			}
		})
	}
}

// mixFigures are one run's measurements of a mix.
type mixFigures struct {
	plainWrite, plainRead, floorWrite, floorRead, mountWrite, mountRead time.Duration
	plainLat, floorLat, mountLat                                        []time.Duration
	drain, directPut                                                    time.Duration
	writeOps                                                            map[string]int
	writeCPU                                                            float64 // daemon CPU seconds for the writes and their upload
	plainPurge, floorPurge, mountPurge                                  time.Duration
	purgeLists, checkLists                                              int
	purgeOps                                                            map[string]int // the purge's requests, its deletes and checks included
	ttfbMount, ttfbDirect                                               []time.Duration
	coldOps                                                             map[string]int
	coldMount, coldDirect                                               time.Duration
	rclone                                                              rcloneFigures
	haveRclone                                                          bool
}

func benchMix(b *testing.B, mix []mixFile, delay time.Duration) {
	var f mixFigures
	const conc = 8

	// Baselines: a plain local directory, and the FUSE floor over one.
	plain := b.TempDir()
	f.plainWrite, f.plainLat = writeMix(b, plain, mix)
	f.plainRead = readMix(b, plain, mix)
	floorDir := b.TempDir()
	floor, unmountFloor := floorMount(b, floorDir)
	f.floorWrite, f.floorLat = writeMix(b, floor, mix)
	f.floorRead = readMix(b, floor, mix)
	purgeSet := purgeMix(mix)
	writeMix(b, floor, purgeSet)
	unmountFloor()
	// The floor's purge is cold as the mount's is: a floor mounted anew
	// has looked up none of the names (the one that wrote them kept
	// them all for an hour, and purged without a LOOKUP), and the page
	// cache holds none of the directories.
	floor, unmountFloor = floorMount(b, floorDir)
	dropCaches(b)
	f.floorPurge = purge(b, floor, purgeSet)
	unmountFloor()

	// The mount, through a counting proxy that adds delay to every
	// request. The direct baselines go through the same proxy, so that
	// both sides pay the same hop.
	_, srv, bucket := s3test.Bucket(b, "synapse/")
	proxy := s3test.NewProxy(b, srv.Endpoint)
	proxy.SetFaults(s3test.Faults{Delay: delay}, 1)
	client := viaProxy(b, srv, proxy, bucket, "synapse/")
	cfg := config(b, srv, proxy.URL, bucket, b.TempDir(), fmt.Sprintf("upload_concurrency: %d\nlog_level: info\n", conc))
	mnt := b.TempDir()
	d := start(b, cfg, mnt)
	proxy.Reset()
	cpu0 := cpuSeconds(b, d.cmd.Process.Pid)
	f.mountWrite, f.mountLat = writeMix(b, mnt, mix)
	lastClose := time.Now()
	flushed(b, cfg, 600*time.Second)
	f.drain = time.Since(lastClose)
	f.writeCPU = cpuSeconds(b, d.cmd.Process.Pid) - cpu0
	f.writeOps = opsOf(proxy)
	f.mountRead = readMix(b, mnt, mix)
	writeMix(b, mnt, purgeSet)
	flushed(b, cfg, 600*time.Second)
	d.terminate(b)

	// Baseline for the drain: the same files PUT directly, same concurrency.
	_, _, directBucket := s3test.Bucket(b, "")
	direct := viaProxy(b, srv, proxy, directBucket, "")
	f.directPut = concurrently(b, mix, conc, func(i int, m mixFile) error {
		data := payload(m.size, i)
		return direct.Put(context.Background(), m.rel, bytes.NewReader(data), int64(len(data)), nil)
	})

	// A new mount on a wiped cache, as after a restart that lost it or
	// on another host: the purge set was never seen here, and is purged
	// as Synapse does; every request it causes is counted, the deletes
	// and the checks behind it included. The small files' first bytes
	// are then timed cold.
	cfg2 := config(b, srv, proxy.URL, bucket, b.TempDir(), "log_level: info\n")
	d2 := start(b, cfg2, mnt)
	writeMix(b, plain, purgeSet)
	dropCaches(b)
	f.plainPurge = purge(b, plain, purgeSet)
	proxy.Reset()
	f.mountPurge = purge(b, mnt, purgeSet)
	f.purgeLists = opsOf(proxy)["ListObjects"]
	flushed(b, cfg2, 600*time.Second)
	waitStatus(b, cfg2, "rmdir_checks_waiting", 0)
	waitStatus(b, cfg2, "fetches_in_flight", 0)
	f.purgeOps = opsOf(proxy)
	f.checkLists = f.purgeOps["ListObjects"] - f.purgeLists

	var small []mixFile
	for _, m := range mix {
		if m.size < 1<<20 && len(small) < 200 {
			small = append(small, m)
		}
	}
	dropPageCache(b)
	proxy.Reset()
	f.ttfbMount = firstBytes(b, small, func(m mixFile) (io.ReadCloser, error) { return os.Open(filepath.Join(mnt, m.rel)) })
	f.coldOps = opsOf(proxy)
	f.ttfbDirect = firstBytes(b, small, func(m mixFile) (io.ReadCloser, error) {
		body, err := client.Get(context.Background(), m.rel, 0, -1)
		return body, err
	})
	d2.terminate(b)

	// The whole mix read cold, with the same concurrency on both sides.
	d3 := start(b, config(b, srv, proxy.URL, bucket, b.TempDir(), "log_level: info\n"), mnt)
	dropPageCache(b)
	f.coldMount = concurrently(b, mix, conc, func(_ int, m mixFile) error {
		n, err := readAll(filepath.Join(mnt, m.rel))
		if err == nil && n != m.size {
			err = fmt.Errorf("cold read %s: %d bytes", m.rel, n)
		}
		return err
	})
	d3.terminate(b)
	f.coldDirect = concurrently(b, mix, conc, func(_ int, m mixFile) error {
		body, err := client.Get(context.Background(), m.rel, 0, -1)
		if err != nil {
			return err
		}
		defer body.Close()
		_, err = io.Copy(io.Discard, body)
		return err
	})
	if delay == 0 {
		f.rclone, f.haveRclone = rcloneWrite(b, srv, proxy, mix)
	}
	f.report(b, mix, len(purgeSet), len(small))
}

func (f mixFigures) report(b *testing.B, mix []mixFile, purged, coldFiles int) {
	n := float64(len(mix))
	gb := float64(totalBytes(mix)) / 1e9
	ratio := func(base, got time.Duration) float64 { return base.Seconds() / got.Seconds() }
	b.ReportMetric(ratio(f.plainWrite, f.mountWrite), "write_ratio")
	b.ReportMetric(ratio(f.floorWrite, f.mountWrite), "write_vs_floor")
	b.ReportMetric(ratio(f.plainRead, f.mountRead), "warm_read_ratio")
	b.ReportMetric(ratio(f.floorRead, f.mountRead), "warm_read_vs_floor")
	b.ReportMetric(float64(percentile(f.mountLat, 99))/float64(percentile(f.plainLat, 99)), "write_p99_latency_ratio")
	b.ReportMetric(float64(percentile(f.mountLat, 99))/float64(percentile(f.floorLat, 99)), "write_p99_vs_floor")
	b.ReportMetric(ratio(f.plainPurge, f.mountPurge), "cold_purge_ratio")
	b.ReportMetric(ratio(f.floorPurge, f.mountPurge), "cold_purge_vs_floor")
	b.ReportMetric(float64(f.purgeLists)/float64(purged), "purge_path_LIST/media")
	purgeRequests := 0
	for _, k := range f.purgeOps {
		purgeRequests += k
	}
	b.ReportMetric(float64(purgeRequests)/float64(purged), "purge_requests/media")
	b.ReportMetric(ratio(f.directPut, f.drain), "drain_vs_direct_PUT")
	b.ReportMetric(float64(percentile(f.ttfbMount, 50))/float64(percentile(f.ttfbDirect, 50)), "cold_TTFB_p50_vs_GET")
	b.ReportMetric(float64(percentile(f.ttfbMount, 99))/float64(percentile(f.ttfbDirect, 99)), "cold_TTFB_p99_vs_GET")
	b.ReportMetric(ratio(f.coldDirect, f.coldMount), "cold_read_vs_GET")
	total := 0
	for _, k := range f.writeOps {
		total += k
	}
	b.ReportMetric(float64(total)/n, "requests/written_file")
	b.ReportMetric(f.writeCPU/n*1000, "CPU_s/1000_files")
	b.ReportMetric(f.writeCPU/gb, "CPU_s/GB")
	if f.haveRclone {
		b.ReportMetric(f.writeCPU/f.rclone.cpu, "CPU_vs_rclone")
		b.ReportMetric(ratio(f.rclone.write, f.mountWrite), "write_vs_rclone")
		b.Logf("rclone mount (full cache): write %.0f files/s, CPU %.2f s (%.2f s per 1,000 files, %.2f s per GB)",
			n/f.rclone.write.Seconds(), f.rclone.cpu, f.rclone.cpu/n*1000, f.rclone.cpu/gb)
	}
	cold := 0
	for _, k := range f.coldOps {
		cold += k
	}
	b.ReportMetric(float64(cold)/float64(coldFiles), "cold_read_requests/file")
	b.Logf("mix: %d files, %.0f MB; write files/s plain %.0f, floor %.0f, mount %.0f; warm read MB/s plain %.0f, floor %.0f, mount %.0f",
		len(mix), gb*1e3, n/f.plainWrite.Seconds(), n/f.floorWrite.Seconds(), n/f.mountWrite.Seconds(),
		gb*1e3/f.plainRead.Seconds(), gb*1e3/f.floorRead.Seconds(), gb*1e3/f.mountRead.Seconds())
	b.Logf("write latency p50/p99: plain %v/%v, floor %v/%v, mount %v/%v",
		percentile(f.plainLat, 50), percentile(f.plainLat, 99), percentile(f.floorLat, 50), percentile(f.floorLat, 99),
		percentile(f.mountLat, 50), percentile(f.mountLat, 99))
	b.Logf("requests during write+drain: %v; drain %v vs direct PUT %v; daemon CPU %.2f s", f.writeOps,
		f.drain.Round(time.Millisecond), f.directPut.Round(time.Millisecond), f.writeCPU)
	b.Logf("cold purge of %d media never seen here: plain %.0f media/s, floor %.0f media/s, mount %.0f media/s; LISTs on its path %d, in the background checks %d; all its requests %v",
		purged, float64(purged)/f.plainPurge.Seconds(), float64(purged)/f.floorPurge.Seconds(), float64(purged)/f.mountPurge.Seconds(),
		f.purgeLists, f.checkLists, f.purgeOps)
	b.Logf("cold first byte of %d files: mount p50 %v p99 %v, direct GET p50 %v p99 %v; requests %v",
		coldFiles, percentile(f.ttfbMount, 50), percentile(f.ttfbMount, 99), percentile(f.ttfbDirect, 50), percentile(f.ttfbDirect, 99), f.coldOps)
	b.Logf("cold read of the whole mix: mount %v, direct GETs %v", f.coldMount.Round(time.Millisecond), f.coldDirect.Round(time.Millisecond))
}

// BenchmarkSequential1GiB writes and reads 1 GiB through the mount and in
// a plain directory, three times each, alternating, and compares medians
// (the page cache's write-back makes single runs noisy).
func BenchmarkSequential1GiB(b *testing.B) {
	for range b.N {
		big := envInt("S3MEDIAFS_BENCH_SEQ_MB", 1024)
		plain := b.TempDir()
		_, srv, bucket := s3test.Bucket(b, "synapse/")
		cfg := config(b, srv, "", bucket, b.TempDir(), "log_level: info\n")
		mnt := b.TempDir()
		d := start(b, cfg, mnt)
		var pw, pr, mw, mr []time.Duration
		for range 3 {
			w, r := seqWriteRead(b, filepath.Join(plain, "seq"), big, func() {})
			pw, pr = append(pw, w), append(pr, r)
			// The read waits for the upload: on this one machine the
			// local S3 server writing the object would otherwise compete
			// with it for the same disk and cores, which a remote store
			// does not.
			w, r = seqWriteRead(b, filepath.Join(mnt, "seq"), big, func() { flushed(b, cfg, 600*time.Second) })
			mw, mr = append(mw, w), append(mr, r)
		}
		d.terminate(b)
		b.ReportMetric(percentile(pw, 50).Seconds()/percentile(mw, 50).Seconds(), "seq_write_ratio")
		b.ReportMetric(percentile(pr, 50).Seconds()/percentile(mr, 50).Seconds(), "seq_read_ratio")
		b.Logf("%d MiB: write plain %v mount %v; read plain %v mount %v", big, pw, mw, pr, mr)
	}
}

// viaProxy is a client of bucket whose requests pass through proxy.
func viaProxy(b *testing.B, srv s3test.Server, proxy *s3test.Proxy, bucket, prefix string) *s3.Client {
	b.Helper()
	c, err := s3.New(context.Background(), srv.Config(bucket, prefix, proxy.URL), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// concurrently runs fn for every file of mix, conc at a time, and returns
// how long they all took.
func concurrently(b *testing.B, mix []mixFile, conc int, fn func(int, mixFile) error) time.Duration {
	b.Helper()
	start := time.Now()
	g := errgroup.Group{}
	g.SetLimit(conc)
	for i, m := range mix {
		g.Go(func() error { return fn(i, m) })
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

// waitStatus waits until the status of the daemon serving cfg shows want
// for the figure name.
func waitStatus(b *testing.B, cfg, name string, want float64) {
	b.Helper()
	eventually(b, 120*time.Second, name, func() bool {
		out, _ := cli(b, "status", "--json", "--socket", socketOf(b, cfg))
		var st map[string]any
		return json.Unmarshal([]byte(out), &st) == nil && st[name] == want
	})
}
