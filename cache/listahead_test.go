package cache

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// pagedLookups is an in-memory store whose lookups, as S3's, carry at
// most page objects from below the key.
type pagedLookups struct {
	*objstore.Mem
	page int
}

func (s pagedLookups) Lookup(ctx context.Context, key string, below func(objstore.Entry)) (objstore.Found, error) {
	n := 0
	f, err := s.Mem.Lookup(ctx, key, func(e objstore.Entry) {
		if n < s.page {
			below(e)
		}
		n++
	})
	if n > s.page {
		f.Complete = false
	}
	return f, err
}

// synapseTree puts n media, each with a thumbnail, in mem as Synapse lays
// them out below top, and returns their paths.
func synapseTree(mem *objstore.Mem, top string, n int) []string {
	var paths []string
	for i := range n {
		id := fmt.Sprintf("%02x/%02x/media%04d", i*7%256, i*13%256, i)
		for _, p := range []string{top + "/local_content/" + id, top + "/local_thumbnails/" + id + "/32-32-image-png"} {
			mem.SetObject(p, bytes.Repeat([]byte{byte(i)}, 5000+i))
			paths = append(paths, p)
		}
	}
	return paths
}

// known reports whether the index has a record of p.
func known(t *testing.T, c *Cache, p string) bool {
	t.Helper()
	_, ok, err := c.readRecord(p)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// openListAhead opens a cache that lists ahead up to keys objects. It
// trusts a listing for an hour, as the daemon does: with no
// RevalidateAfter every directory lookup that reaches the store lists
// ahead again, and such a listing, started before a purge, was counted
// among the purge's requests.
func openListAhead(t *testing.T, store objstore.Store, keys int) *Cache {
	t.Helper()
	c, err := Open(Options{Dir: t.TempDir(), Store: store, ListAheadKeys: keys, RevalidateAfter: time.Hour,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	t.Cleanup(func() { c.Close() })
	return c
}

// lookupPath looks p up as the kernel does, one name at a time.
func lookupPath(t *testing.T, c *Cache, p string) { t.Helper(); walkPath(t, c.Lookup, p) }

// TestListAheadAnswersAPurgeFromTheIndex: the first lookup below a tree
// the index lacks records what the store holds there, page after page
// up to the bound, and the lookups that follow (a purge of media never
// seen here) send nothing; past the bound the store is asked again.
func TestListAheadAnswersAPurgeFromTheIndex(t *testing.T) {
	for _, tc := range []struct {
		name      string
		page, max int
	}{{"one page", 1000, 10000}, {"many pages", 50, 10000}, {"bounded", 50, 120}} {
		t.Run(tc.name, func(t *testing.T) {
			mem := objstore.NewMem()
			paths := synapseTree(mem, "media", 150)
			c := openListAhead(t, pagedLookups{mem, tc.page}, tc.max)
			lookupPath(t, c, paths[0])
			deadline := time.Now().Add(10 * time.Second)
			learned := func() int {
				n := 0
				for _, p := range paths {
					if known(t, c, p) {
						n++
					}
				}
				return n
			}
			want := min(len(paths), tc.max)
			for learned() < want && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := learned(); n < want || n > tc.max+tc.page {
				t.Fatalf("%d of %d objects in the index; want %d to %d", n, len(paths), want, tc.max+tc.page)
			}
			lists, heads := mem.Count("list"), mem.Count("head")
			for _, p := range paths {
				lookupPath(t, c, p)
				if err := c.Unlink(context.Background(), p); err != nil {
					t.Fatal(err)
				}
			}
			drainTest(t, c)
			asked := mem.Count("list") - lists + mem.Count("head") - heads
			if tc.max >= len(paths) && asked != 0 {
				t.Errorf("the purge asked the store %d times (LIST %d); want none", asked, mem.Count("list")-lists)
			}
			if tc.max < len(paths) && asked == 0 {
				t.Errorf("past the bound of %d objects nothing was asked: the bound does not hold", tc.max)
			}
			if keys := mem.Keys(); len(keys) != 0 {
				t.Errorf("%d objects left after the purge", len(keys))
			}
		})
	}
}

// TestListAheadOff: with ListAheadKeys negative, a lookup records only
// what it was asked about.
func TestListAheadOff(t *testing.T) {
	mem := objstore.NewMem()
	paths := synapseTree(mem, "media", 20)
	c := openListAhead(t, mem, -1)
	lookupPath(t, c, paths[0])
	time.Sleep(100 * time.Millisecond) // time enough for a read-ahead to have begun
	if known(t, c, paths[2]) {
		t.Error("a name never looked up is in the index with the read-ahead off")
	}
}

// TestListAheadLearnsNothingRemovedHere: a name unlinked here while the
// listing ran is not brought back by it.
func TestListAheadLearnsNothingRemovedHere(t *testing.T) {
	mem := objstore.NewMem()
	paths := synapseTree(mem, "media", 40)
	store := heldListing{pagedLookups{mem, 10}, make(chan struct{})}
	gate := store.gate
	c := openListAhead(t, store, 10000)
	lookupPath(t, c, paths[0])
	victim := paths[len(paths)-1]
	lookupPath(t, c, victim) // from the store: the listing is held
	if err := c.Unlink(context.Background(), victim); err != nil {
		t.Fatal(err)
	}
	drainTest(t, c)
	close(gate)
	deadline := time.Now().Add(10 * time.Second)
	for !known(t, c, paths[len(paths)-2]) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if known(t, c, victim) {
		t.Errorf("%s, unlinked here, is back in the index from a listing asked for before", victim)
	}
	if _, err := c.Lookup(context.Background(), victim); err == nil {
		t.Errorf("%s can be looked up after its unlink", victim)
	}
}

// heldListing answers a listing as the store was when it was asked, but
// only once gate is closed: a listing in flight while names change here.
type heldListing struct {
	pagedLookups
	gate chan struct{}
}

func (s heldListing) List(ctx context.Context, prefix string, recursive bool, fn func(objstore.Entry) bool) error {
	var asked []objstore.Entry
	err := s.Mem.List(ctx, prefix, recursive, func(e objstore.Entry) bool { asked = append(asked, e); return true })
	<-s.gate
	for _, e := range asked {
		if !fn(e) {
			break
		}
	}
	return err
}
