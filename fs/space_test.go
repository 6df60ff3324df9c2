// A full cache filesystem: ENOSPC for the writer, nothing written lost,
// and writing resumes.

package fs

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/cache"
	"github.com/s3mediafs/s3mediafs/cache/objstore"
	"github.com/s3mediafs/s3mediafs/fs/mounttest"
	"github.com/s3mediafs/s3mediafs/s3"
	"github.com/s3mediafs/s3mediafs/s3/s3test"
)

// tinyFS mounts a tmpfs of size bytes for the test and removes it after.
func tinyFS(t *testing.T, size string) string {
	t.Helper()
	mounttest.CheckLeaks(t, testRoot, "")
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return dir
}

// TestTinyCacheFilesystemFillsUp: with S3 refusing uploads, a small cache
// filesystem fills to the floor; the writer gets ENOSPC, everything
// already written stays intact, and writing resumes once S3 catches up.
func TestTinyCacheFilesystemFillsUp(t *testing.T) {
	client, srv, bucket := s3test.Bucket(t, "")
	proxy := s3test.NewProxy(t, srv.Endpoint)
	viaProxy, err := s3.New(t.Context(), srv.Config(bucket, "", proxy.URL), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(viaProxy.Close)
	proxy.SetFail(func(r *http.Request) int {
		if r.Method == http.MethodPut {
			return http.StatusServiceUnavailable
		}
		return 0
	})
	cacheFS := tinyFS(t, "48m")
	mnt, c := testMountOpts(t, cache.Options{Store: viaProxy, Dir: filepath.Join(cacheFS, "cache"),
		MinFree: 8 << 20, SpaceWait: 500 * time.Millisecond})

	dir := filepath.Join(mnt, "local_content/aa/bb")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	written := map[string][]byte{}
	var full error
	for i := 0; i < 40; i++ {
		p := filepath.Join(dir, fmt.Sprintf("f%02d", i)) // key: local_content/aa/bb/fNN
		data := payload(2<<20, byte(i))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			full = err
			os.Remove(p) // Synapse removes a file it failed to write
			break
		}
		written[p] = data
	}
	if !errors.Is(full, syscall.ENOSPC) {
		t.Fatalf("filling the cache filesystem: %v, want ENOSPC", full)
	}
	if len(written) < 5 {
		t.Fatalf("only %d files fit", len(written))
	}
	for p, data := range written {
		if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s damaged by the full disk: %v", p, err)
		}
	}

	proxy.SetFail(nil)
	drain(t, c)
	p := filepath.Join(dir, "after")
	if err := os.WriteFile(p, payload(2<<20, 99), 0o644); err != nil {
		t.Fatalf("writing once S3 caught up: %v", err)
	}
	drain(t, c)
	for p, data := range written {
		key := "local_content/aa/bb/" + filepath.Base(p)
		if got, ok := objectBytes(t, client, key); !ok || !bytes.Equal(got, data) {
			t.Fatalf("%s not in S3 intact", key)
		}
	}
}

// TestSizeChangesThatCannotFit: under a 32 MiB cache, growing a file to
// 4 TiB in one step (truncate, a write far past the end, fallocate) is
// refused, and the cache goes on working: small files are still written,
// and no 4 TiB version is recorded or queued.
func TestSizeChangesThatCannotFit(t *testing.T) {
	const huge = 4 << 40
	for _, mode := range ioModes {
		t.Run(mode.name, func(t *testing.T) {
			store := objstore.NewMem()
			mnt, c, _ := testMountWith(t, cache.Options{Store: store, MaxSize: 32 << 20, SpaceWait: 200 * time.Millisecond},
				Options{Passthrough: mode.passthrough})
			p := filepath.Join(mnt, "f")
			if err := os.WriteFile(p, []byte("small"), 0o644); err != nil {
				t.Fatal(err)
			}
			tooBig := func(what string, err error) {
				t.Helper()
				if !errors.Is(err, syscall.EFBIG) && !errors.Is(err, syscall.ENOSPC) {
					t.Errorf("%s to 4 TiB: %v, want EFBIG or ENOSPC", what, err)
				}
			}
			tooBig("truncate", os.Truncate(p, huge))

			f, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			_, werr := f.WriteAt([]byte("x"), huge)
			cerr := f.Close()
			tooBig("pwrite", errors.Join(werr, cerr))

			f, err = os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			tooBig("fallocate", syscall.Fallocate(int(f.Fd()), 0, 0, huge))
			f.Close()

			if fi, err := os.Stat(p); err != nil || fi.Size() > 1<<20 {
				t.Fatalf("after the refusals: %v, %v", fi, err)
			}
			for i := range 4 {
				data := payload(1<<20, byte(i))
				q := filepath.Join(mnt, fmt.Sprintf("g%d", i))
				if err := os.WriteFile(q, data, 0o644); err != nil {
					t.Fatalf("a small write after the refusals: %v", err)
				}
			}
			drain(t, c)
			if u := c.Usage(); u.LocalBytes > 32<<20 || u.DirtyBytes != 0 {
				t.Fatalf("accounting after the refusals: %+v", u)
			}
			if obj, ok := store.Object("f"); !ok || len(obj) > 1<<20 {
				t.Fatalf("stored f: %d bytes, present %v", len(obj), ok)
			}
		})
	}
}
