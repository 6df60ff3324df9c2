package fs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/cache"
	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// Requests one after another are answered by the reader that read them,
// which then reads the next: no thread hand-over per request.
func TestSerialRequestsKeepTheirReader(t *testing.T) {
	old := readerTakeover
	readerTakeover = time.Minute // no request here may start another
	t.Cleanup(func() { readerTakeover = old })
	mnt, _, srv := testMountWith(t, cache.Options{Store: objstore.NewMem()}, Options{Passthrough: true})
	if err := os.Mkdir(filepath.Join(mnt, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	before := srv.conn.readers.Load()
	const n = 200
	for i := range n {
		// A name never looked up: each is a LOOKUP the kernel cannot
		// answer from its own caches.
		if _, err := os.Lstat(filepath.Join(mnt, "d", fmt.Sprint("missing", i))); !os.IsNotExist(err) {
			t.Fatalf("lstat: %v", err)
		}
	}
	if started := srv.conn.readers.Load() - before; started > 0 {
		t.Fatalf("%d readers started for %d requests one after another, want none", started, n)
	}
}

// A request waiting for the store holds up no other: once it has had its
// reader for readerTakeover, another reader reads on.
func TestSlowRequestHoldsUpNoOther(t *testing.T) {
	mem := objstore.NewMem()
	mem.SetObject("a/slow/media", []byte("x"))
	release, entered := make(chan struct{}), make(chan struct{}, 1)
	wait := func(ctx context.Context, key string) error {
		if strings.HasPrefix(key, "a/slow") {
			select {
			case entered <- struct{}{}:
			default:
			}
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	store := &objstore.Faulty{Store: mem, BeforeList: wait, BeforeHead: wait, BeforeGet: wait}
	// The store's time bounds long enough for a loaded machine: the slow
	// lookup must still wait when the writes are done.
	mnt, _, _ := testMountWith(t, cache.Options{Store: store, StoreTimeout: time.Minute, LookupTimeout: time.Minute}, Options{Passthrough: true})
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	// Elsewhere than beside it: the kernel itself holds a directory's
	// creates while a lookup in it is answered.
	if err := os.Mkdir(filepath.Join(mnt, "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	slow := make(chan error, 1)
	go func() {
		_, err := os.Stat(filepath.Join(mnt, "a", "slow", "media"))
		slow <- err
	}()
	<-entered
	start := time.Now()
	for i := range 20 {
		if err := os.WriteFile(filepath.Join(mnt, "b", fmt.Sprint("fast", i)), []byte("y"), 0o644); err != nil {
			t.Fatalf("a write beside a lookup waiting for the store: %v", err)
		}
	}
	select {
	case err := <-slow:
		t.Fatalf("the slow lookup ended (%v) before the writes beside it, %v after it began", err, time.Since(start))
	default:
	}
	close(release)
	if err := <-slow; err != nil {
		t.Fatalf("the slow lookup: %v", err)
	}
}
