// Concurrent writers, readers and deleters, and odd names that must stay
// inside the mount.

package fs

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/s3mediafs/s3mediafs/cache"
	"github.com/s3mediafs/s3mediafs/cache/objstore"
	"github.com/s3mediafs/s3mediafs/s3"
	"github.com/s3mediafs/s3mediafs/s3/s3test"
)

// TestConcurrentWritersReadersDeleters runs many goroutines writing,
// reading and deleting distinct and overlapping paths at once, as
// Synapse's thread pool does; run with -race. Distinct paths must end
// exact; shared paths must end as one complete version, the same locally
// and in S3.
func TestConcurrentWritersReadersDeleters(t *testing.T) {
	client, _, _ := s3test.Bucket(t, "")
	mnt, c := testMount(t, client, "")
	const workers, perWorker = 12, 25
	var wg sync.WaitGroup
	var mu sync.Mutex
	final := map[string][]byte{} // distinct paths: what must remain
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(w), 9))
			for i := range perWorker {
				own := fmt.Sprintf("local_content/w%02d/%02d/f%03d", w, i%3, i)
				data := payload(1000+rnd.IntN(60_000), byte(w*perWorker+i))
				if err := os.MkdirAll(filepath.Join(mnt, filepath.Dir(own)), 0o755); err != nil {
					errs <- err
					return
				}
				if err := os.WriteFile(filepath.Join(mnt, own), data, 0o644); err != nil {
					errs <- err
					return
				}
				if got, err := os.ReadFile(filepath.Join(mnt, own)); err != nil || !bytes.Equal(got, data) {
					errs <- fmt.Errorf("%s read back wrong: %v", own, err)
					return
				}
				mu.Lock()
				final[own] = data
				mu.Unlock()
				if i%4 == 3 {
					if err := os.Remove(filepath.Join(mnt, own)); err != nil {
						errs <- err
						return
					}
					mu.Lock()
					final[own] = nil
					mu.Unlock()
				}
				// Overlapping paths: everyone writes, reads and removes them.
				shared := fmt.Sprintf("local_content/shared/s%d", rnd.IntN(4))
				os.MkdirAll(filepath.Join(mnt, "local_content/shared"), 0o755)
				switch rnd.IntN(3) {
				case 0:
					os.WriteFile(filepath.Join(mnt, shared), payload(5000+rnd.IntN(5000), byte(i)), 0o644)
				case 1:
					os.ReadFile(filepath.Join(mnt, shared))
				case 2:
					if err := os.Remove(filepath.Join(mnt, shared)); err != nil && !errors.Is(err, os.ErrNotExist) {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	drain(t, c)
	for p, want := range final {
		got, ok := objectBytes(t, client, p)
		if want == nil {
			if ok {
				t.Errorf("%s removed but in S3", p)
			}
			continue
		}
		if !ok || !bytes.Equal(got, want) {
			t.Errorf("%s in S3: ok=%v %d bytes, want %d", p, ok, len(got), len(want))
		}
	}
	for i := range 4 {
		p := fmt.Sprintf("local_content/shared/s%d", i)
		local, lerr := os.ReadFile(filepath.Join(mnt, p))
		remote, ok := objectBytes(t, client, p)
		switch {
		case errors.Is(lerr, os.ErrNotExist) && !ok:
		case lerr == nil && ok && bytes.Equal(local, remote):
		default:
			t.Errorf("%s: local %d bytes (%v), S3 %d bytes (%v): they disagree", p, len(local), lerr, len(remote), ok)
		}
	}
}

// TestOddNamesStayInside: names Synapse never writes get clean answers and
// land exactly at prefix+path, never outside it.
func TestOddNamesStayInside(t *testing.T) {
	client, _, _ := s3test.Bucket(t, "pre/")
	mnt, c := testMountOpts(t, cache.Options{Store: client, MaxKeyLen: 1024 - len("pre/")})
	odd := []string{
		strings.Repeat("x", 255), // the longest name the kernel allows
		"with space and\ttab",    //
		"new\nline",              //
		"..dots..", "-dash", "%2e%2e", "back\\slash",
	}
	for _, name := range odd {
		if err := os.WriteFile(filepath.Join(mnt, name), []byte(name), 0o644); err != nil {
			t.Fatalf("create %q: %v", name, err)
		}
	}
	// Object keys are UTF-8: a name that is not is refused on every store
	// (versitygw would take it; SeaweedFS refuses it).
	if err := os.WriteFile(filepath.Join(mnt, "bytes-\xff\xfe"), nil, 0o644); !errors.Is(err, syscall.EILSEQ) {
		t.Fatalf("create a name that is not UTF-8: %v, want EILSEQ", err)
	}
	// A path longer than an S3 key may be (1024 bytes with the prefix).
	deep := mnt
	for range 4 {
		deep = filepath.Join(deep, strings.Repeat("d", 250))
		if err := os.Mkdir(deep, 0o755); err != nil {
			t.Fatalf("mkdir: %v", err)
		}
	}
	err := os.WriteFile(filepath.Join(deep, strings.Repeat("f", 30)), []byte("x"), 0o644)
	if !errors.Is(err, syscall.ENAMETOOLONG) {
		t.Fatalf("a path past S3's key limit: %v, want ENAMETOOLONG", err)
	}
	drain(t, c)
	for _, name := range odd {
		if got, ok := objectBytes(t, client, name); !ok || string(got) != name {
			t.Errorf("%q not stored at prefix+name", name)
		}
	}
	raw, err := s3.New(t.Context(), s3test.FromEnv(t).Config(client.Bucket(), "", ""), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(raw.Close)
	var keys []string
	raw.List(t.Context(), "", true, func(e objstore.Entry) bool {
		keys = append(keys, e.Name)
		return true
	})
	for _, k := range keys {
		if !strings.HasPrefix(k, "pre/") {
			t.Errorf("key %q outside the prefix", k)
		}
	}
}
