// The orphan sweep after an unclean stop removes only data files that no
// record names, now or later.

package cache

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// A file created while the sweep runs, whose data file's time is then set
// into the past (cp -p, rsync -a, touch -d), keeps its only copy.
func TestSweepSparesFilesMadeDuringIt(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store := objstore.NewMem()
	// Never started: nothing reaches the store, the local copy is the only one.
	c, err := Open(Options{Dir: dir, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	// An orphan left by the "crash": a data file no record names.
	orphanID, f, err := c.data.Create()
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	// Crash: the index is never marked stopped.
	c.ix.Close()

	c, err = Open(Options{Dir: dir, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if !c.uncleanStop {
		t.Fatal("the second open did not see the unclean stop")
	}
	referenced, err := c.referencedData(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Between the sweep's snapshot and its walk, a writer makes a file
	// and sets its time far into the past.
	want := []byte("only copy")
	writeFile(t, c, "media/f", want)
	past := time.Now().Add(-30 * 24 * time.Hour)
	if _, err := c.SetAttr(ctx, "media/f", AttrChange{MTime: &past}); err != nil {
		t.Fatal(err)
	}
	c.removeOrphans(ctx, referenced)

	if _, err := os.Stat(c.data.Path(orphanID)); !os.IsNotExist(err) {
		t.Errorf("the orphan was not swept: %v", err)
	}
	h, err := c.OpenFile(ctx, "media/f", os.O_RDONLY)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Release(ctx)
	got := make([]byte, 64)
	n, err := h.ReadAt(ctx, got, 0)
	if err != nil || !bytes.Equal(got[:n], want) {
		t.Fatalf("read after the sweep: %q, %v; want %q", got[:n], err, want)
	}
}

// After an unclean stop, a PUT the dead daemon had sent may land after the
// restarted daemon's DELETE of the removed file: the DELETE is sent again
// once such a request can no longer arrive.
func TestDeleteRepeatedAfterAbandonedRequestsSettle(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store := objstore.NewMem()
	c, err := Open(Options{Dir: dir, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	writeFile(t, c, "m/f", []byte("v1"))
	drainTest(t, c)
	c.Close()

	// The crash: f is removed (its delete owed) and the daemon dies.
	c, err = Open(Options{Dir: dir, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Unlink(ctx, "m/f"); err != nil {
		t.Fatal(err)
	}
	c.ix.Close()

	c, err = Open(Options{Dir: dir, Store: store, settle: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	t.Cleanup(func() { c.Close() })
	deadline := time.Now().Add(5 * time.Second)
	for store.DeleteRequests() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	// The abandoned PUT lands after the first DELETE.
	store.SetObject("m/f", []byte("v1"))
	drainTest(t, c)
	if _, ok := store.Object("m/f"); ok {
		t.Fatal("the removed file is in the store again after the drain")
	}
}
