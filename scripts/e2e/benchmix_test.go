// The Synapse mix of the benchmarks: its files, its phases and its figures.

package e2e

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/s3mediafs/s3mediafs/fs/mounttest"
)

// mixFile is one file of a benchmark's media mix.
type mixFile struct {
	rel  string
	size int
}

// mediaMix is Synapse-like with bytes mostly in large files: many
// 20–200 kB images, some 1–5 MB, a few 20–50 MB. S3MEDIAFS_BENCH_SMALL
// scales it.
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

// thumbnailMix is what a homeserver mostly stores: 1,500 files of about
// 150 MB in all, 77 % under 64 KiB (thumbnails), 22 % of 64 KiB–1 MiB
// (images), 1 % of 1–10 MiB and one of 20 MiB, each in a media directory
// of its own as Synapse lays them out. S3MEDIAFS_BENCH_FILES scales it.
func thumbnailMix() []mixFile { return thumbnailMixOf(envInt("S3MEDIAFS_BENCH_FILES", 1500)) }

// thumbnailMixOf is thumbnailMix with n files.
func thumbnailMixOf(n int) []mixFile {
	rnd := rand.New(rand.NewPCG(11, 11))
	// logUniform skews sizes toward the small end of [lo, hi), as media
	// sizes are.
	logUniform := func(lo, hi int) int {
		return int(float64(lo) * math.Pow(float64(hi)/float64(lo), rnd.Float64()))
	}
	var out []mixFile
	for range n - 1 {
		var size int
		switch r := rnd.Float64(); {
		case r < 0.77:
			size = logUniform(2<<10, 64<<10)
		case r < 0.99:
			size = logUniform(64<<10, 1<<20)
		default:
			size = logUniform(1<<20, 10<<20)
		}
		id := fmt.Sprintf("%016x", rnd.Uint64())
		out = append(out, mixFile{fmt.Sprintf("local_content/%s/%s/%s", id[:2], id[2:4], id[4:]), size})
	}
	return append(out, mixFile{"remote_content/big.example/zz/yy/video", 20 << 20})
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

// percentile is the p-th percentile (0–100) of d.
func percentile(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)*p/100, len(s)-1)]
}

func totalBytes(mix []mixFile) int64 {
	var n int64
	for _, f := range mix {
		n += int64(f.size)
	}
	return n
}

// dropCaches writes back what is dirty and drops the page, dentry and
// inode caches: what a cold figure starts from.
func dropCaches(b *testing.B) {
	b.Helper()
	syscall.Sync()
	dropPageCache(b)
}

func dropPageCache(b *testing.B) {
	b.Helper()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
		b.Logf("cannot drop the page cache (%v); cold figures include it", err)
	}
}

// cpuSeconds is the user and system CPU time the process pid has used,
// from /proc/PID/stat.
func cpuSeconds(b *testing.B, pid int) float64 {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// The command name (field 2) may hold spaces; the fields after its
	// closing parenthesis start at field 3 (state).
	fields := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	const clockTicks = 100 // USER_HZ on Linux
	return (utime + stime) / clockTicks
}

// floorMount mounts the FUSE floor over dir at a new directory and
// returns the mount point and its unmount, which the caller calls before
// it starts a daemon: the daemon's leak check must not see the floor's
// request loops. The floor is
// go-fuse's loopback file system: every name maps 1:1 onto dir, files
// open with passthrough (as root, on a kernel that has it), entries,
// attributes and absent names are cached for an hour, and there is no
// index and no store. Nothing built on go-fuse does less per request on
// this kernel, so it bounds what the mount can reach.
func floorMount(b *testing.B, dir string) (string, func()) {
	b.Helper()
	root, err := gofs.NewLoopbackRoot(dir)
	if err != nil {
		b.Fatal(err)
	}
	mnt := b.TempDir()
	hour := time.Hour
	srv, err := gofs.Mount(mnt, root, &gofs.Options{
		AttrTimeout: &hour, EntryTimeout: &hour, NegativeTimeout: &hour,
		MountOptions: fuse.MountOptions{DirectMount: true, FsName: "floor"},
	})
	if err != nil {
		b.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			if err := srv.Unmount(); err != nil {
				unmount(mnt)
			}
			srv.Wait() // its request loops end with the connection
		})
	}
	b.Cleanup(stop)
	return mnt, stop
}

// purgeMix is the files of mix under 1 MiB, under a tree of their own.
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

// firstBytes is, for each file, the time from open to its first byte.
func firstBytes(b *testing.B, files []mixFile, open func(mixFile) (io.ReadCloser, error)) []time.Duration {
	b.Helper()
	out := make([]time.Duration, len(files))
	buf := make([]byte, 1)
	for i, f := range files {
		t0 := time.Now()
		r, err := open(f)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(r, buf); err != nil {
			b.Fatal(err)
		}
		out[i] = time.Since(t0)
		r.Close()
	}
	return out
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
