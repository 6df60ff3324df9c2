// A store answer that predates a delete this host has since completed
// must not bring the deleted key back: a directory rename's listing (and
// a lookup's) that still shows an object whose owed delete (a file
// rename's move away, an unlink) landed meanwhile must not make a record
// of it. (Found as a ghost "a" after rename a→b and a directory rename,
// under load.)

package cache

import (
	"bytes"
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// staleLister answers a LIST with what the store held when it was asked,
// but only once release is closed: the answer arrives late, as a slow
// store's does.
type staleLister struct {
	objstore.Store
	prefix  string
	listed  chan struct{}
	release chan struct{}
	once    sync.Once
}

func (s *staleLister) List(ctx context.Context, prefix string, recursive bool, fn func(objstore.Entry) bool) error {
	if prefix != s.prefix {
		return s.Store.List(ctx, prefix, recursive, fn)
	}
	var got []objstore.Entry
	err := s.Store.List(ctx, prefix, recursive, func(e objstore.Entry) bool { got = append(got, e); return true })
	s.once.Do(func() { close(s.listed) })
	<-s.release
	for _, e := range got {
		if !fn(e) {
			break
		}
	}
	return err
}

func TestALateListingDoesNotBringBackADeletedKey(t *testing.T) {
	mem := objstore.NewMem()
	stale := &staleLister{Store: mem, prefix: "remote_content/d/", listed: make(chan struct{}), release: make(chan struct{})}
	// The move a → b waits until the listing has seen a in the store.
	var moving atomic.Bool
	store := &objstore.Faulty{Store: stale, BeforeCopy: func(ctx context.Context, _ string) error {
		if moving.Load() {
			<-stale.listed
		}
		return nil
	}}
	c := openTest(t, t.TempDir(), store, nil)
	ctx := context.Background()
	writeFile(t, c, "remote_content/d/a", []byte("0123"))
	drainTest(t, c)
	// The object moves a → b: a copy owed, then a's delete.
	moving.Store(true)
	if err := c.Rename(ctx, "remote_content/d/a", "remote_content/d/b"); err != nil {
		t.Fatal(err)
	}
	renamed := make(chan error, 1)
	go func() { renamed <- c.Rename(ctx, "remote_content/d", "remote_content/dx") }()
	<-stale.listed // the listing has seen a in the store
	drainTest(t, c)
	if _, ok := mem.Object("remote_content/d/a"); ok {
		t.Fatal("a's delete did not land")
	}
	close(stale.release)
	if err := <-renamed; err != nil {
		t.Fatal(err)
	}
	if _, ok, err := c.readRecord("remote_content/dx/a"); err != nil || ok {
		t.Fatalf("a ghost of the deleted a came back with the directory rename (%v)", err)
	}
	drainTest(t, c)
	names := readdirNames(t, c, "remote_content/dx")
	if !slices.Equal(names, []string{"b"}) {
		t.Fatalf("after the renames: %v, want [b]", names)
	}
	if got, ok := mem.Object("remote_content/dx/b"); !ok || !bytes.Equal(got, []byte("0123")) {
		t.Fatalf("dx/b in the store: %q %v", got, ok)
	}
	for _, k := range mem.Keys() {
		if k != "remote_content/dx/b" {
			t.Errorf("left in the store: %s", k)
		}
	}
}

func readdirNames(t *testing.T, c *Cache, dir string) []string {
	t.Helper()
	entries, err := c.Readdir(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name)
	}
	slices.Sort(names)
	return names
}
