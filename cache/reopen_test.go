package cache

import (
	"context"
	"os"
	"testing"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// A file the kernel writes directly (FUSE passthrough) across a
// takeover. The process before committed a version of it, the truncate
// of a rewrite, and uploaded it (clean, 0 bytes); the kernel then wrote
// the new bytes to the data file, unseen, and the process died before
// the writer's close. The process after reopens the writer: its data file
// is larger than the clean record says, which for a closed file means a
// torn write and a copy to drop, but here holds the only copy of what
// the writer wrote. It is kept, and recorded at the writer's close (found
// under 20 SIGKILLs in a row: the close returned and the file read back
// empty).
func TestReopenedWriterKeepsWhatTheKernelWrote(t *testing.T) {
	dir := t.TempDir()
	mem := objstore.NewMem()
	first := openTest(t, dir, mem, nil)
	ctx := context.Background()
	writeFile(t, first, "m/f", []byte("the version before"))
	drainTest(t, first)
	// The kernel opens for passthrough, then truncates by a SETATTR with
	// no file handle (go-fuse negotiates no atomic O_TRUNC).
	h, err := first.OpenFile(ctx, "m/f", os.O_WRONLY)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.WriteDirectly(ctx); err != nil {
		t.Fatal(err)
	}
	if err := first.Truncate(ctx, "m/f", 0); err != nil {
		t.Fatal(err)
	}
	drainTest(t, first) // the truncated version goes up
	r, _, err := first.readRecord("m/f")
	if err != nil || r.State != Clean || r.Size != 0 {
		t.Fatalf("before the kernel writes: %+v, %v; want clean, empty", r, err)
	}
	want := []byte("what the writer wrote through the kernel")
	if err := os.WriteFile(first.data.Path(r.Data), want, 0o600); err != nil {
		t.Fatal(err)
	}
	first.Close() // the process dies; the kernel keeps the file open

	next := openTest(t, dir, mem, nil)
	h2, err := next.ReopenWriter(ctx, "m/f", r.Ino, os.O_WRONLY)
	if err != nil {
		t.Fatal(err)
	}
	if err := h2.Flush(ctx); err != nil { // the writer's close
		t.Fatal(err)
	}
	if err := h2.Release(ctx); err != nil {
		t.Fatal(err)
	}
	drainTest(t, next)
	if got := readFile(t, next, "m/f"); string(got) != string(want) {
		t.Fatalf("after the writer's close: %q, want %q", got, want)
	}
	if got, ok := mem.Object("m/f"); !ok || string(got) != string(want) {
		t.Fatalf("in the store: %q (%v), want %q", got, ok, want)
	}
}
