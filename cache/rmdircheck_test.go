// rmdir answers from the index and checks the store in the background: a
// directory the store still holds comes back, and a purge costs a few
// LISTs in all.

package cache

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/index"
	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// openForRmdir opens a cache whose knowledge of the store expires at once,
// so that only the store can say what lies below a learned directory.
func openForRmdir(t *testing.T, mem *objstore.Mem, o Options) *Cache {
	t.Helper()
	o.Store, o.NegativeTTL = mem, time.Millisecond
	if o.rmdirCheckEvery == 0 {
		o.rmdirCheckEvery = 20 * time.Millisecond
	}
	return openWith(t, o)
}

// learnThenEmpty learns d/x from the store, lets another host add d/y
// behind the mount's back, and unlinks d/x, so that the index holds
// nothing below d while the store holds d/y.
func learnThenEmpty(t *testing.T, c *Cache, mem *objstore.Mem) {
	t.Helper()
	ctx := context.Background()
	mem.SetObject("d/x", []byte("1"))
	lookUp(t, c, "d/x")
	mem.SetObject("d/y", []byte("another host's"))
	if err := c.Unlink(ctx, "d/x"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // what the lookups learned expires
}

// lookUp stats p and each directory above it, top down, as the kernel
// looks a path up.
func lookUp(t *testing.T, c *Cache, p string) { t.Helper(); walkPath(t, c.Stat, p) }

// walkPath asks look about each directory above p, top down, then p.
func walkPath(t *testing.T, look func(context.Context, string) (Attr, error), p string) {
	t.Helper()
	for i := range len(p) + 1 {
		if i == len(p) || p[i] == '/' {
			if _, err := look(context.Background(), p[:i]); err != nil {
				t.Fatalf("look up %s: %v", p[:i], err)
			}
		}
	}
}

func TestRmdirAnswersFromTheIndexAndTheStoreBringsTheDirectoryBack(t *testing.T) {
	mem := objstore.NewMem()
	c := openForRmdir(t, mem, Options{})
	ctx := context.Background()
	learnThenEmpty(t, c, mem)
	lists := mem.Count("list")
	if err := c.Rmdir(ctx, "d"); err != nil {
		t.Fatalf("rmdir: %v", err)
	}
	if n := mem.Count("list") - lists; n != 0 {
		t.Fatalf("rmdir sent %d LISTs, want none", n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for c.Status().RmdirReappeared == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the background check never brought d back: %+v", c.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, ok := mem.Object("d/y"); !ok {
		t.Fatal("another host's object was deleted")
	}
	if _, ok := mem.Object("d/x"); ok {
		t.Fatal("the unlinked object is still in the store")
	}
	entries, err := c.Readdir(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name != "d" {
		t.Fatalf("root lists %+v, want d again", entries)
	}
	if a, err := c.Stat(ctx, "d/y"); err != nil || a.Size != int64(len("another host's")) {
		t.Fatalf("stat d/y: %+v %v", a, err)
	}
}

func TestRmdirWaitsForTheStoreWhenAsked(t *testing.T) {
	for _, o := range []Options{{RmdirWaitsForStore: true}, {KeepDeletedInStore: true}} {
		t.Run(fmt.Sprintf("waits=%v,keep=%v", o.RmdirWaitsForStore, o.KeepDeletedInStore), func(t *testing.T) {
			mem := objstore.NewMem()
			c := openForRmdir(t, mem, o)
			learnThenEmpty(t, c, mem)
			if err := c.Rmdir(context.Background(), "d"); !errors.Is(err, ErrNotEmpty) {
				t.Fatalf("rmdir of a directory the store fills: %v, want ErrNotEmpty", err)
			}
		})
	}
}

// keepsFolders lists every directory it ever held as a common prefix, as
// stores that keep emptied directories (versitygw's posix backend) do.
type keepsFolders struct {
	*objstore.Mem
	folders map[string][]string // by parent prefix
}

func (k keepsFolders) List(ctx context.Context, prefix string, recursive bool, fn func(objstore.Entry) bool) error {
	if recursive {
		return k.Mem.List(ctx, prefix, true, fn)
	}
	seen := map[string]bool{}
	var entries []objstore.Entry
	err := k.Mem.List(ctx, prefix, false, func(e objstore.Entry) bool {
		seen[e.Name] = true
		entries = append(entries, e)
		return true
	})
	for _, name := range k.folders[prefix] {
		if !seen[name] {
			entries = append(entries, objstore.Entry{Name: name, Dir: true})
		}
	}
	for _, e := range entries {
		if !fn(e) {
			break
		}
	}
	return err
}

// A purge removes two directories per media; their checks are coalesced
// into a few LISTs for the whole purge, and none of them comes back, on a
// store that forgets emptied directories and on one that keeps them.
func TestPurgeCostsAFewListsInAll(t *testing.T) {
	for _, keeps := range []bool{false, true} {
		t.Run(fmt.Sprintf("keepsFolders=%v", keeps), func(t *testing.T) { testPurgeLists(t, keeps) })
	}
}

func testPurgeLists(t *testing.T, keeps bool) {
	mem := objstore.NewMem()
	var store objstore.Store = mem
	folders := map[string][]string{}
	if keeps {
		store = keepsFolders{mem, folders}
	}
	// The round is run by hand below, once the purge is done.
	c := openWith(t, Options{Store: store, NegativeTTL: time.Millisecond, rmdirCheckEvery: time.Hour})
	ctx := context.Background()
	const media = 300
	path := func(i int) string { return fmt.Sprintf("p/%02x/%02x/m%04d", i%37, i%11, i) }
	for i := range media {
		mem.SetObject(path(i), []byte("media"))
		// A store that keeps folders lists p/xx/ and p/xx/yy/ forever;
		// one purge's roots are the p/xx (all of them, but for the
		// last round: p itself), so list those.
		xx, _, _ := strings.Cut(strings.TrimPrefix(path(i), "p/"), "/")
		if !slices.Contains(folders["p/"], xx) {
			folders["p/"] = append(folders["p/"], xx)
		}
	}
	// One media stays, so that the purge's roots are siblings (p/xx),
	// not p itself.
	mem.SetObject("p/zz/kept", []byte("media"))
	lookUp(t, c, "p/zz/kept")
	for i := range media {
		lookUp(t, c, path(i))
	}
	time.Sleep(10 * time.Millisecond)
	lists := mem.Count("list")
	for i := range media {
		if err := c.Unlink(ctx, path(i)); err != nil {
			t.Fatal(err)
		}
		for d := index.ParentOf(path(i)); d != ""; d = index.ParentOf(d) {
			if err := c.Rmdir(ctx, d); errors.Is(err, ErrNotEmpty) {
				break
			} else if err != nil {
				t.Fatalf("rmdir %s: %v", d, err)
			}
		}
	}
	if n := mem.Count("list") - lists; n != 0 {
		t.Fatalf("the purge sent %d LISTs on its path, want none", n)
	}
	drainTest(t, c)
	c.checkRemovedDirs(ctx)
	st := c.Status()
	if st.RmdirChecksWaiting != 0 {
		t.Fatalf("%d directories left unchecked once every delete landed", st.RmdirChecksWaiting)
	}
	if n := mem.Count("list") - lists; float64(n) > 0.05*media {
		t.Fatalf("%d LISTs for a purge of %d media (checks %d), want at most %.0f", n, media, st.RmdirChecks, 0.05*media)
	}
	if st.RmdirChecks == 0 || st.RmdirReappeared != 0 {
		t.Fatalf("checks %d, reappeared %d: want some checks and nothing back", st.RmdirChecks, st.RmdirReappeared)
	}
	if keys := mem.Keys(); len(keys) != 1 {
		t.Fatalf("store holds %v, want p/zz/kept alone", keys)
	}
}

// Where the store lists emptied directories, one recursive LIST of the
// parent settles which removed siblings hold another host's objects: the
// one that does shows again, and no LIST per directory is sent.
func TestRemovedSiblingsSettledByOneRecursiveList(t *testing.T) {
	mem := objstore.NewMem()
	folders := map[string][]string{"p/": {"a", "b", "c", "d"}}
	c := openWith(t, Options{Store: keepsFolders{mem, folders}, NegativeTTL: time.Millisecond, rmdirCheckEvery: time.Hour})
	ctx := context.Background()
	mem.SetObject("p/keep/x", []byte("stays"))
	for _, d := range []string{"a", "b", "c", "d"} {
		mem.SetObject("p/"+d+"/m", []byte("media"))
	}
	for _, d := range []string{"a", "b", "c", "d"} {
		lookUp(t, c, "p/"+d+"/m")
	}
	lookUp(t, c, "p/keep/x")
	mem.SetObject("p/c/theirs", []byte("another host's"))
	time.Sleep(10 * time.Millisecond)
	for _, d := range []string{"a", "b", "c", "d"} {
		if err := c.Unlink(ctx, "p/"+d+"/m"); err != nil {
			t.Fatal(err)
		}
		if err := c.Rmdir(ctx, "p/"+d); err != nil {
			t.Fatal(err)
		}
	}
	drainTest(t, c)
	lists := mem.Count("list")
	c.checkRemovedDirs(ctx)
	if n := mem.Count("list") - lists; n != 2 {
		t.Errorf("%d LISTs for four removed siblings, want a delimited and a recursive one", n)
	}
	if st := c.Status(); st.RmdirChecks != 4 || st.RmdirReappeared != 1 {
		t.Fatalf("checks %d, reappeared %d: want 4 and 1", st.RmdirChecks, st.RmdirReappeared)
	}
	if _, ok, _ := c.readRecord("p/c"); !ok {
		t.Fatal("p/c, which holds another host's object, is not shown again")
	}
}
