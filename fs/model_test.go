// Random operations on a mount checked against a model, across restarts.

package fs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/cache"
	"github.com/s3mediafs/s3mediafs/cache/objstore"
	"github.com/s3mediafs/s3mediafs/fs/mounttest"
	"github.com/s3mediafs/s3mediafs/s3/s3test"
)

// regressionSeeds are seeds that once found a difference; they run first,
// always. Add a failing seed here when fixing what it found.
var regressionSeeds = []uint64{
	1001, // a cancelled PUT of an old version landed after the new one (0-byte files)
	1012, // readdir showed a renamed file whose delete completed during the LIST
	1004, // a directory whose objects' moves landed during a LIST came back (directory renames)
	1005, // SeaweedFS kept a renamed directory's folder, made here, which then listed again
	1017, // the same, seen after a restart with a wiped cache
	1042, // mkdir over a removed file dropped the owed DELETE
}

// TestRandomOperationsAgainstModel runs seeded random sequences of file
// operations on the mount and on a plain directory side by side, comparing
// every result, with daemon restarts and cache wipes interleaved.
// S3MEDIAFS_MODEL_SEEDS and S3MEDIAFS_MODEL_OPS make it a longer soak.
func TestRandomOperationsAgainstModel(t *testing.T) {
	seeds := append([]uint64(nil), regressionSeeds...)
	n := envIntFS("S3MEDIAFS_MODEL_SEEDS", 3)
	for s := range n {
		seeds = append(seeds, uint64(1000+s))
	}
	ops := envIntFS("S3MEDIAFS_MODEL_OPS", 200)
	if v := os.Getenv("S3MEDIAFS_MODEL_SEED"); v != "" {
		one, _ := strconv.ParseUint(v, 10, 64)
		seeds = []uint64{one}
	}
	for _, mode := range ioModes {
		t.Run(mode.name, func(t *testing.T) {
			for _, seed := range seeds {
				t.Run(fmt.Sprint(seed), func(t *testing.T) { runModel(t, seed, ops, mode.passthrough) })
			}
		})
	}
}

func envIntFS(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// modelMount is a mount that can be stopped and started again in a test.
type modelMount struct {
	t        *testing.T
	store    objstore.Store
	cacheDir string
	mnt      string
	c        *cache.Cache
	stop     func()

	passthrough bool
}

func (m *modelMount) up() {
	m.t.Helper()
	mounttest.CheckLeaks(m.t, testRoot, "")
	c, err := cache.Open(cache.Options{Dir: m.cacheDir, Store: m.store, RetryMin: 10 * time.Millisecond,
		RetryMax: 100 * time.Millisecond, StoreTimeout: 5 * time.Second})
	if err != nil {
		m.t.Fatal(err)
	}
	server, err := Mount(m.mnt, c, MountOptions{Options: Options{EntryTimeout: time.Second, AttrTimeout: time.Second, Passthrough: m.passthrough}})
	if err != nil {
		c.Close()
		m.t.Fatal(err)
	}
	c.Start()
	m.c = c
	stopped := false
	m.stop = func() {
		if stopped {
			return
		}
		stopped = true
		server.Unmount()
		server.Wait()
		c.Close()
	}
}

// down stops the mount gracefully, with everything owed sent.
func (m *modelMount) down() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if n, err := m.c.Drain(ctx); err != nil {
		m.t.Fatalf("drain: %d owed: %v", n, err)
	}
	m.stop()
}

func runModel(t *testing.T, seed uint64, steps int, passthrough bool) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	client, _, _ := s3test.Bucket(t, "")
	m := &modelMount{t: t, store: client, cacheDir: t.TempDir(), mnt: t.TempDir(), passthrough: passthrough}
	m.up()
	t.Cleanup(func() { m.stop() })
	model := t.TempDir()
	rnd := rand.New(rand.NewPCG(seed, seed*31+7))
	dirs := []string{"", "a", "a/b", "c"}
	names := []string{"f1", "f2", "f3", "a", "b"}
	pick := func() string {
		d := dirs[rnd.IntN(len(dirs))]
		if d == "" {
			return names[rnd.IntN(len(names))]
		}
		return d + "/" + names[rnd.IntN(len(names))]
	}
	pickDir := func() string { return dirs[1+rnd.IntN(len(dirs)-1)] }
	for step := range steps {
		var desc string
		var got, want result
		switch op := rnd.IntN(20); {
		case op < 5:
			p, data := pick(), randBytes(rnd, rnd.IntN(70_000))
			desc = fmt.Sprintf("write %s (%d bytes)", p, len(data))
			got = res(os.WriteFile(filepath.Join(m.mnt, p), data, 0o644))
			want = res(os.WriteFile(filepath.Join(model, p), data, 0o644))
		case op < 7:
			p, off, data := pick(), int64(rnd.IntN(80_000)), randBytes(rnd, 1+rnd.IntN(5000))
			desc = fmt.Sprintf("pwrite %s at %d (%d bytes)", p, off, len(data))
			got, want = pwrite(filepath.Join(m.mnt, p), off, data), pwrite(filepath.Join(model, p), off, data)
		case op < 8:
			p, size := pick(), int64(rnd.IntN(80_000))
			desc = fmt.Sprintf("truncate %s to %d", p, size)
			got, want = res(os.Truncate(filepath.Join(m.mnt, p), size)), res(os.Truncate(filepath.Join(model, p), size))
		case op < 11:
			p := pick()
			desc = "read " + p
			got, want = read(filepath.Join(m.mnt, p)), read(filepath.Join(model, p))
		case op < 13:
			p := pick()
			desc = "unlink " + p
			got, want = res(syscall.Unlink(filepath.Join(m.mnt, p))), res(syscall.Unlink(filepath.Join(model, p)))
		case op < 14:
			p := pickDir()
			desc = "mkdir " + p
			got, want = res(os.Mkdir(filepath.Join(m.mnt, p), 0o755)), res(os.Mkdir(filepath.Join(model, p), 0o755))
		case op < 15:
			p := pickDir()
			desc = "rmdir " + p
			got, want = res(syscall.Rmdir(filepath.Join(m.mnt, p))), res(syscall.Rmdir(filepath.Join(model, p)))
		case op < 17:
			from, to := pick(), pick()
			if rnd.IntN(3) == 0 {
				// A directory's rename, racing the uploads, moves and
				// deletes its files still owe.
				from, to = pickDir(), pickDir()+"x"
				if rnd.IntN(2) == 0 {
					to = pickDir()
				}
			}
			desc = fmt.Sprintf("rename %s %s", from, to)
			got = res(os.Rename(filepath.Join(m.mnt, from), filepath.Join(m.mnt, to)))
			want = res(os.Rename(filepath.Join(model, from), filepath.Join(model, to)))
		case op < 19:
			d := dirs[rnd.IntN(len(dirs))]
			desc = "readdir " + d
			got, want = readdir(filepath.Join(m.mnt, d)), readdir(filepath.Join(model, d))
		default:
			if rnd.IntN(2) == 0 {
				desc = "restart"
				m.down()
				m.up()
			} else {
				desc = "restart with a wiped cache"
				m.down()
				os.RemoveAll(m.cacheDir)
				m.cacheDir = t.TempDir()
				m.up()
				// S3 keeps no directories: the empty ones are gone,
				// except the folders a store keeps after deletes.
				pruneEmptyDirs(model)
				adoptKeptFolders(t, m.mnt, model)
			}
			if os.Getenv("S3MEDIAFS_MODEL_TRACE") != "" {
				t.Logf("step %d %s", step, desc)
			}
			compareTrees(t, seed, step, m.mnt, model)
			continue
		}
		if os.Getenv("S3MEDIAFS_MODEL_TRACE") != "" {
			t.Logf("step %d %s: %s", step, desc, want)
		}
		if got != want {
			t.Fatalf("seed %d step %d %s:\n mount: %s\n model: %s", seed, step, desc, got, want)
		}
	}
	m.down()
	m.up()
	compareTrees(t, seed, steps, m.mnt, model)
}

// result is an operation's outcome: an errno or the data it returned.
type result string

func res(err error) result {
	if err == nil {
		return "ok"
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return result(errno.Error())
	}
	return result("error: " + err.Error())
}

func pwrite(p string, off int64, data []byte) result {
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return res(err)
	}
	_, err = f.WriteAt(data, off)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return res(err)
}

func read(p string) result {
	b, err := os.ReadFile(p)
	if err != nil {
		return res(err)
	}
	return result(fmt.Sprintf("%d bytes %x", len(b), hash(b)))
}

func readdir(p string) result {
	entries, err := os.ReadDir(p)
	if err != nil {
		return res(err)
	}
	var names []string
	for _, e := range entries {
		if isStoreArtifact(e.Name()) {
			continue
		}
		kind := "f"
		if e.IsDir() {
			kind = "d"
		}
		names = append(names, e.Name()+":"+kind)
	}
	sort.Strings(names)
	return result(strings.Join(names, ","))
}

// isStoreArtifact spots the test server's own temporary files: versitygw's
// posix backend links an upload in progress into the bucket directory as
// ".<name>.sgwtmp.<n>" before renaming it, and LIST shows it meanwhile. It
// is the store's listing, not the mount's; AWS S3 has no such names.
func isStoreArtifact(name string) bool { return strings.Contains(name, ".sgwtmp.") }

func hash(b []byte) uint64 {
	var h uint64 = 14695981039346656037
	for _, c := range b {
		h = (h ^ uint64(c)) * 1099511628211
	}
	return h
}

func randBytes(rnd *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rnd.Uint32())
	}
	return b
}

// pruneEmptyDirs removes directories with no file anywhere below them.
func pruneEmptyDirs(root string) {
	var dirs []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && p != root {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		os.Remove(dirs[i]) // only succeeds when empty
	}
}

// adoptKeptFolders makes in the model the empty directories the mount
// shows after a wiped cache, where the store keeps a directory's folder
// once its last object is deleted (SeaweedFS): emptied without rmdir, the
// directory was never removed. On other stores the model stays strict.
func adoptKeptFolders(t *testing.T, mnt, model string) {
	if os.Getenv("S3MEDIAFS_TEST_STORE") != "seaweedfs" {
		return
	}
	filepath.WalkDir(mnt, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == mnt || !d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(mnt, p)
		if _, err := os.Stat(filepath.Join(model, rel)); os.IsNotExist(err) {
			t.Logf("the store kept the folder of %s", rel)
			os.MkdirAll(filepath.Join(model, rel), 0o755)
		}
		return nil
	})
}

// compareTrees walks both trees and compares names, kinds and contents.
func compareTrees(t *testing.T, seed uint64, step int, mnt, model string) {
	t.Helper()
	walk := func(root string) map[string]result {
		out := map[string]result{}
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || p == root {
				return nil
			}
			rel, _ := filepath.Rel(root, p)
			if isStoreArtifact(d.Name()) {
				return nil
			}
			if d.IsDir() {
				out[rel] = "dir"
			} else {
				out[rel] = read(p)
			}
			return nil
		})
		return out
	}
	got, want := walk(mnt), walk(model)
	for p, w := range want {
		if got[p] != w {
			t.Fatalf("seed %d after step %d: %s is %q on the mount, %q in the model", seed, step, p, got[p], w)
		}
	}
	for p, g := range got {
		if _, ok := want[p]; !ok {
			t.Fatalf("seed %d after step %d: %s (%q) exists only on the mount", seed, step, p, g)
		}
	}
}
