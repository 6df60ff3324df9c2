// The Synapse-level benchmark: the real Synapse's uploads and downloads
// per second, and their latency, through its HTTP API, on the mount
// against Synapse on a plain directory of the same disk, in the same run.

package e2e

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/s3/s3test"
)

// httpRun is one phase of the benchmark: every request's latency and the
// wall time of them all.
type httpRun struct {
	took time.Duration
	lat  []time.Duration
}

func (r httpRun) perSecond() float64 { return float64(len(r.lat)) / r.took.Seconds() }

func (r httpRun) String() string {
	return fmt.Sprintf("%.0f/s p50 %v p99 %v", r.perSecond(), percentile(r.lat, 50).Round(100*time.Microsecond), percentile(r.lat, 99).Round(100*time.Microsecond))
}

// synapseClients runs op for each of n items, clients at a time.
func synapseClients(n, clients int, op func(i int)) httpRun {
	lat := make([]time.Duration, n)
	next := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for range clients {
		wg.Go(func() {
			for i := range next {
				t0 := time.Now()
				op(i)
				lat[i] = time.Since(t0)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return httpRun{took: time.Since(start), lat: lat}
}

// cpuOf is the CPU time the process pid has used (user and system), 0
// if it cannot be read.
func cpuOf(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command's closing parenthesis; utime and
	// stime are the 12th and 13th of them, in clock ticks (100 Hz).
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// cpuMeter measures what processes spend on a phase, per request.
type cpuMeter struct {
	names []string
	pids  []int
	start []time.Duration
}

func newCPUMeter(names []string, pids ...int) *cpuMeter {
	m := &cpuMeter{names: names, pids: pids}
	for _, p := range pids {
		m.start = append(m.start, cpuOf(p))
	}
	return m
}

// per returns each process's CPU time per request over n requests.
func (m *cpuMeter) per(n int) string {
	var parts []string
	for i, p := range m.pids {
		parts = append(parts, fmt.Sprintf("%s %.2f ms", m.names[i], float64(cpuOf(p)-m.start[i])/float64(time.Millisecond)/float64(n)))
	}
	return "CPU per request: " + strings.Join(parts, ", ")
}

// fuseOps reads the daemon's FUSE operation counts and total seconds, by
// operation, from its metrics page.
func fuseOps(b *testing.B, d *daemon) map[string][2]float64 {
	families := metricsOf(b, d)
	out := map[string][2]float64{}
	if f := families["s3mediafs_fuse_operation_duration_seconds"]; f != nil {
		for _, m := range f.GetMetric() {
			op := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "op" {
					op = l.GetValue()
				}
			}
			v := out[op]
			v[0] += float64(m.GetHistogram().GetSampleCount())
			v[1] += m.GetHistogram().GetSampleSum()
			out[op] = v
		}
	}
	return out
}

// opsPer says, for each FUSE operation, how many of it and how long they
// took the daemon per request, between two readings of fuseOps.
func opsPer(before, after map[string][2]float64, n int) string {
	var parts []string
	for _, op := range slices.Sorted(maps.Keys(after)) {
		count, secs := after[op][0]-before[op][0], after[op][1]-before[op][1]
		if count > 0 {
			parts = append(parts, fmt.Sprintf("%s %.2f × %.0f µs", op, count/float64(n), secs/count*1e6))
		}
	}
	return "FUSE operations per request: " + strings.Join(parts, ", ")
}

// benchUploads uploads the mix through syn and returns the media IDs.
func benchUploads(b *testing.B, syn *synapse, mix []mixFile, clients int) (httpRun, []string) {
	ids := make([]string, len(mix))
	run := synapseClients(len(mix), clients, func(i int) {
		ids[i] = syn.upload(fmt.Sprintf("m%d.bin", i), "application/octet-stream", payload(mix[i].size, i))
	})
	return run, ids
}

// benchDownloads downloads every media and checks its length.
func benchDownloads(b *testing.B, syn *synapse, mix []mixFile, ids []string, clients int) httpRun {
	var bad sync.Once
	run := synapseClients(len(ids), clients, func(i int) {
		got, status := syn.download(ids[i])
		if status != 200 || len(got) != mix[i].size {
			bad.Do(func() { b.Errorf("download %s: HTTP %d, %d bytes of %d", ids[i], status, len(got), mix[i].size) })
		}
	})
	return run
}

// BenchmarkSynapseHTTP is the figure an operator feels: the real Synapse,
// 300 media of the small-file mix (S3MEDIAFS_BENCH_FILES), 4 clients at
// once, uploads then warm downloads, on a plain directory and on the
// mount, then downloads through an empty cache (cold) against the plain
// directory's plus one direct GET of each object; with the store near
// and 20 ms away (the test proxy); and uploads with the store cut off,
// which shows what the S3 server's share of the two cores costs.
func BenchmarkSynapseHTTP(b *testing.B) {
	files := envInt("S3MEDIAFS_BENCH_FILES", 300)
	mix := thumbnailMixOf(files)
	const clients = 4
	for range b.N {
		_, srv, bucket := s3test.Bucket(b, "synapse/")
		proxy := s3test.NewProxy(b, srv.Endpoint)
		plainDir := b.TempDir()
		plain, plainTrace := startTracedSynapse(b, plainDir, "max_upload_size: 50M\n")
		mnt := b.TempDir()
		cfg := config(b, srv, proxy.URL, bucket, b.TempDir(), "log_level: info\n")
		// S3MEDIAFS_BENCH_CPUPROFILE: the CPU profile of the daemon that
		// serves the uploads and warm downloads, for `go tool pprof`.
		var env []string
		if p := os.Getenv("S3MEDIAFS_BENCH_CPUPROFILE"); p != "" {
			env = append(env, "S3MEDIAFS_CPUPROFILE="+p)
		}
		d := startEnv(b, cfg, mnt, env)
		onMount, mountTrace := startTracedSynapse(b, mnt, "max_upload_size: 50M\n")

		// The plain directory, then the mount, then the mount with the
		// store cut off: uploads, then warm downloads; and the CPU time
		// Synapse, the daemon and the S3 server spend on each.
		storePid, _ := strconv.Atoi(os.Getenv("S3MEDIAFS_TEST_STORE_PID"))
		names := []string{"synapse", "s3mediafs", "S3 server"}
		meter := func(syn *synapse) *cpuMeter {
			return newCPUMeter(names, syn.cmd.Process.Pid, d.cmd.Process.Pid, storePid)
		}
		m := meter(plain)
		plainUp, plainIDs := benchUploads(b, plain, mix, clients)
		plainUpCPU := m.per(len(mix))
		m = meter(plain)
		plainTrace.mark(b)
		plainWarm := benchDownloads(b, plain, mix, plainIDs, clients)
		plainWarmCPU := m.per(len(mix))
		plainBlocked := plainTrace.since(b)
		plainOne := benchDownloads(b, plain, mix, plainIDs, 1)
		m = meter(onMount)
		ops := fuseOps(b, d)
		up, ids := benchUploads(b, onMount, mix, clients)
		upOps := opsPer(ops, fuseOps(b, d), len(mix))
		flushed(b, cfg, 5*time.Minute)
		upCPU := m.per(len(mix))
		m = meter(onMount)
		ops = fuseOps(b, d)
		mountTrace.mark(b)
		warm := benchDownloads(b, onMount, mix, ids, clients)
		warmBlocked := mountTrace.since(b)
		warmOps := opsPer(ops, fuseOps(b, d), len(mix))
		warmCPU := m.per(len(mix))
		proxy.SetFaults(s3test.Faults{Blackhole: true}, 1)
		m = meter(onMount)
		cutUp, _ := benchUploads(b, onMount, mix, clients)
		cutUpCPU := m.per(len(mix))
		proxy.SetFaults(s3test.Faults{}, 1)
		flushed(b, cfg, 5*time.Minute)

		// Direct GETs of the objects through the same proxy as the
		// daemon's, 4 at once and one at a time: the cold read's floor.
		direct := viaProxy(b, srv, proxy, bucket, "synapse/")
		directGETs := func(delay time.Duration, clients int) httpRun {
			proxy.SetFaults(s3test.Faults{Delay: delay}, 1)
			defer proxy.SetFaults(s3test.Faults{}, 1)
			return synapseClients(len(ids), clients, func(i int) {
				if _, ok := object(b, direct, filepath.ToSlash(mediaDir(ids[i]))); !ok {
					b.Errorf("%s is not in the bucket", ids[i])
				}
			})
		}
		gets, getsOne := directGETs(0, clients), directGETs(0, 1)
		gets20, gets20One := directGETs(20*time.Millisecond, clients), directGETs(20*time.Millisecond, 1)

		// Cold: the daemon again on an empty cache, near and 20 ms away,
		// with 4 clients and with one: Synapse 1.67 waits for the file
		// system on its reactor thread (reactorTracePrelude), so its
		// clients queue behind each other's store round trips.
		var coldRequests, coldOps string
		var coldBlocked reactorBlocked
		cold := func(delay time.Duration, clients int) httpRun {
			d.terminate(b)
			proxy.SetFaults(s3test.Faults{Delay: delay}, 1)
			cfg = config(b, srv, proxy.URL, bucket, b.TempDir(), "log_level: info\n")
			d = start(b, cfg, mnt)
			before := opsOf(proxy)
			ops := fuseOps(b, d)
			mountTrace.mark(b)
			run := benchDownloads(b, onMount, mix, ids, clients)
			coldBlocked = mountTrace.since(b)
			coldOps = opsPer(ops, fuseOps(b, d), len(ids))
			after := opsOf(proxy)
			var parts []string
			for _, op := range slices.Sorted(maps.Keys(after)) {
				if n := after[op] - before[op]; n > 0 {
					parts = append(parts, fmt.Sprintf("%s %.2f", op, float64(n)/float64(len(ids))))
				}
			}
			coldRequests = "store requests per cold download: " + strings.Join(parts, ", ")
			return run
		}
		cold0 := cold(0, clients)
		cold0Requests, cold0Blocked := coldRequests, coldBlocked
		cold0One := cold(0, 1)
		cold0OneBlocked, cold0OneOps := coldBlocked, coldOps
		cold20One := cold(20*time.Millisecond, 1)
		cold20OneBlocked := coldBlocked
		cold20 := cold(20*time.Millisecond, clients)
		// And uploads with the store 20 ms away.
		up20, _ := benchUploads(b, onMount, mix[:len(mix)/2], clients)
		proxy.SetFaults(s3test.Faults{}, 1)
		flushed(b, cfg, 5*time.Minute)

		noErrorsLogged(b, plain, onMount)
		onMount.stop()
		plain.stop()
		d.terminate(b)

		budget := percentile(plainWarm.lat, 50) + percentile(gets.lat, 50)
		b.ReportMetric(up.perSecond()/plainUp.perSecond(), "upload_ratio")
		b.ReportMetric(cutUp.perSecond()/plainUp.perSecond(), "upload_cut_off_ratio")
		b.ReportMetric(warm.perSecond()/plainWarm.perSecond(), "warm_download_ratio")
		b.ReportMetric(percentile(cold0.lat, 50).Seconds()/budget.Seconds(), "cold_p50_vs_plain+GET")
		budgetOne := percentile(plainOne.lat, 50) + percentile(getsOne.lat, 50)
		b.ReportMetric(percentile(cold0One.lat, 50).Seconds()/budgetOne.Seconds(), "cold_p50_one_client_vs_plain+GET")
		b.ReportMetric(cold0Blocked.total().Seconds()/float64(len(ids))/percentile(gets.lat, 50).Seconds(), "cold_reactor_held_per_download_vs_GET")
		b.ReportMetric(coldBlocked.total().Seconds()/float64(len(ids))/percentile(gets20.lat, 50).Seconds(), "cold_20ms_reactor_held_per_download_vs_GET")
		b.Logf("%d media, %d clients", len(mix), clients)
		b.Logf("uploads:   plain %v | mount %v | store cut off %v | store 20 ms away (half the mix) %v", plainUp, up, cutUp, up20)
		b.Logf("downloads: plain %v | mount warm %v | cold %v | cold, store 20 ms away %v | direct GETs %v, 20 ms away %v", plainWarm, warm, cold0, cold20, gets, gets20)
		b.Logf("one client: plain %v | cold, store near %v | cold, store 20 ms away %v | direct GETs %v, 20 ms away %v", plainOne, cold0One, cold20One, getsOne, gets20One)
		sizeOf := func(path string) int {
			for _, list := range [][]string{ids, plainIDs} {
				for i, id := range list {
					if strings.HasSuffix(path, mediaDir(id)) {
						return mix[i].size
					}
				}
			}
			return 0
		}
		for _, p := range []struct {
			name, root string
			run        httpRun
			blocked    reactorBlocked
		}{
			{"warm, plain", plainDir, plainWarm, plainBlocked},
			{"warm, mount", mnt, warm, warmBlocked},
			{"cold, store near", mnt, cold0, cold0Blocked},
			{"cold, store near, one client", mnt, cold0One, cold0OneBlocked},
			{"cold, store 20 ms away, one client", mnt, cold20One, cold20OneBlocked},
			{"cold, store 20 ms away", mnt, cold20, coldBlocked},
		} {
			b.Logf("Synapse's reactor held by the file system, %s: %s", p.name, p.blocked.per(len(ids), p.run.took))
			b.Logf("    slowest: %s", p.blocked.slow(p.root, sizeOf))
		}
		b.Logf("uploads, plain: %s", plainUpCPU)
		b.Logf("uploads, mount (until flushed): %s", upCPU)
		b.Logf("uploads, mount: %s", upOps)
		b.Logf("warm downloads, mount: %s", warmOps)
		b.Logf("cold downloads, store near: %s", cold0Requests)
		b.Logf("cold downloads, store near, one client: %s", cold0OneOps)
		b.Logf("cold downloads, store 20 ms away: %s", coldRequests)
		b.Logf("uploads, mount, store cut off: %s", cutUpCPU)
		b.Logf("warm downloads, plain: %s", plainWarmCPU)
		b.Logf("warm downloads, mount: %s", warmCPU)
	}
}
