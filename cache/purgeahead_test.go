package cache

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// thumbTree puts n media in mem below top, every third one small enough
// to be a symlink (a thumbnail of a few KiB), and returns their paths and
// which are small.
func thumbTree(mem *objstore.Mem, top string, n int) (paths []string, small map[string]bool) {
	small = map[string]bool{}
	for i := range n {
		p := fmt.Sprintf("%s/local_content/%02x/%02x/m%04d", top, i*7%256, i*13%256, i)
		size := 9000 + i
		if i%3 == 0 {
			size = 1000 + i
			small[p] = true
		}
		mem.SetObject(p, bytes.Repeat([]byte{byte(i)}, size))
		paths = append(paths, p)
	}
	return paths, small
}

// listedAll waits until the read-ahead has recorded every path.
func listedAll(t *testing.T, c *Cache, paths []string) {
	t.Helper()
	eventually(t, func() bool {
		for _, p := range paths {
			if !known(t, c, p) {
				return false
			}
		}
		return true
	})
}

func metaKnown(t *testing.T, c *Cache, p string) bool {
	t.Helper()
	r, ok, err := c.readRecord(p)
	if err != nil {
		t.Fatal(err)
	}
	return ok && !r.MetaUnknown
}

func aheadIdle(c *Cache) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ahead.workers == 0
}

// A purge of media never seen here: once it has begun, the small objects
// (which a lookup must ask the store about, as they may be symlinks) are
// asked about ahead of it, and its lookups of them send nothing.
func TestPurgeAsksAboutSmallObjectsAhead(t *testing.T) {
	mem := objstore.NewMem()
	paths, small := thumbTree(mem, "media", 60)
	c := openListAhead(t, mem, 10000)
	ctx := context.Background()
	lookupPath(t, c, paths[1])
	listedAll(t, c, paths)
	if err := c.Unlink(ctx, paths[1]); err != nil {
		t.Fatal(err)
	}
	// The purge goes on, one media at a time; the read-ahead keeps ahead.
	asked := 0
	for _, p := range paths[2:] {
		eventually(t, func() bool { return aheadIdle(c) })
		before := mem.Count("head") + mem.Count("get")
		lookupPath(t, c, p)
		asked += mem.Count("head") + mem.Count("get") - before
		if err := c.Unlink(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	// The read-ahead goes in key order, the purge in its own: the first
	// unlinks' credit may not reach the small objects met first.
	t.Logf("the purge's lookups asked the store %d times for %d small objects", asked, len(small))
	if asked > len(small)/4 {
		t.Errorf("the purge's lookups asked the store %d times for %d small objects; want at most a quarter", asked, len(small))
	}
	if n := mem.Count("head") + mem.Count("get"); n > len(small) {
		t.Errorf("%d HEADs and GETs for %d small objects; want one each at most", n, len(small))
	}
}

// A lone delete asks about no more than purgeAheadPerUnlink others.
func TestLoneDeleteAsksAboutFewAhead(t *testing.T) {
	mem := objstore.NewMem()
	paths, _ := thumbTree(mem, "media", 60)
	c := openListAhead(t, mem, 10000)
	lookupPath(t, c, paths[1])
	listedAll(t, c, paths)
	if err := c.Unlink(context.Background(), paths[1]); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { return aheadIdle(c) })
	time.Sleep(50 * time.Millisecond)
	if n := mem.Count("head") + mem.Count("get"); n != purgeAheadPerUnlink {
		t.Errorf("one unlink led to %d HEADs and GETs; want %d", n, purgeAheadPerUnlink)
	}
}

// A lookup of a small object the read-ahead is asking about waits for
// that answer instead of asking again.
func TestLookupJoinsTheRequestAhead(t *testing.T) {
	mem := objstore.NewMem()
	paths, small := thumbTree(mem, "media", 30)
	var mu sync.Mutex
	var target string
	inHead := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	store := &objstore.Faulty{Store: mem, BeforeHead: func(ctx context.Context, key string) error {
		mu.Lock()
		held := key == target
		mu.Unlock()
		if held {
			once.Do(func() { close(inHead) })
			<-release
		}
		return nil
	}}
	c := openListAhead(t, store, 10000)
	lookupPath(t, c, paths[1])
	listedAll(t, c, paths)
	c.mu.Lock()
	mu.Lock()
	target = c.ahead.queue[0] // the first the read-ahead asks about
	mu.Unlock()
	c.mu.Unlock()
	if !small[target] {
		t.Fatalf("%s remembered as small", target)
	}
	if err := c.Unlink(context.Background(), paths[1]); err != nil {
		t.Fatal(err)
	}
	select {
	case <-inHead:
	case <-time.After(20 * time.Second):
		t.Fatal("the read-ahead never asked about the first small object")
	}
	done := make(chan error, 1)
	go func() { _, err := c.Lookup(context.Background(), target); done <- err }()
	select {
	case err := <-done:
		t.Fatalf("the lookup returned (%v) before the request ahead was answered", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !metaKnown(t, c, target) {
		t.Error("the lookup returned without the metadata")
	}
	eventually(t, func() bool { return aheadIdle(c) })
	if n := mem.Count("get"); n != 0 {
		t.Errorf("the lookup asked the store itself: %d GETs", n)
	}
	if n := mem.Count("head"); n != purgeAheadPerUnlink {
		t.Errorf("%d HEADs; want the read-ahead's %d only", n, purgeAheadPerUnlink)
	}
}
