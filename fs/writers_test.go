package fs

import (
	"log/slog"
	"os"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// stateForTest is a handover state file, as Mount makes one.
func stateForTest(t *testing.T) *os.File {
	t.Helper()
	fd, err := unix.MemfdCreate("test-state", unix.MFD_CLOEXEC)
	if err != nil {
		t.Skipf("memfd: %v", err)
	}
	f := os.NewFile(uintptr(fd), "test-state")
	t.Cleanup(func() { f.Close() })
	return f
}

// The writers one process records are what the next one loads, less the
// released; an open the kernel sends again shows its entry stale.
func TestWritersOutliveTheProcess(t *testing.T) {
	state := stateForTest(t)
	first := &conn{state: state, log: slog.New(slog.DiscardHandler)}
	first.writers = newWriters(first)
	first.backings = newBackings(first)
	w := first.writers
	w.opened(writer{fh: 1<<fhGenShift | 1<<fhIDShift | syscall.O_WRONLY, node: 10, unique: 100})
	w.opened(writer{fh: 1<<fhGenShift | 2<<fhIDShift | syscall.O_RDWR, node: 11, unique: 102})
	w.opened(writer{fh: 1<<fhGenShift | 3<<fhIDShift | syscall.O_WRONLY, node: 12, unique: 104 | resendBit})
	w.released(1<<fhGenShift | 2<<fhIDShift | syscall.O_RDWR)
	// The backing table beside it is its own.
	first.backings.write(first.backings.slots.take(), fileID{1, 2}, 7)

	next := &conn{state: state, log: slog.New(slog.DiscardHandler)}
	next.writers = newWriters(next)
	got := map[uint64]writer{}
	for _, e := range next.writers.load() {
		got[e.node] = e
	}
	if len(got) != 2 || got[10].unique != 100 || got[12].unique != 104 || got[11] != (writer{}) {
		t.Fatalf("loaded %+v, want the writers of nodes 10 and 12", got)
	}
	if _, ok := next.writers.stale(100); ok {
		t.Error("an open sent the first time called an inherited writer stale")
	}
	e, ok := next.writers.stale(104 | resendBit)
	if !ok || e.node != 12 {
		t.Fatalf("the open sent again: %+v %v, want node 12's writer", e, ok)
	}
	next.writers.released(e.fh)
	// The freed slots are used again, and the table holds what is open.
	next.writers.opened(writer{fh: 2 << fhGenShift, node: 13, unique: 200})
	last := &conn{state: state, log: slog.New(slog.DiscardHandler)}
	last.writers = newWriters(last)
	nodes := map[uint64]bool{}
	for _, e := range last.writers.load() {
		nodes[e.node] = true
	}
	if len(nodes) != 2 || !nodes[10] || !nodes[13] {
		t.Fatalf("after a release and an open: %v, want nodes 10 and 13", nodes)
	}
	if next.writers.slots.next != 3 {
		t.Errorf("%d slots used, want the 3 of the first process", next.writers.slots.next)
	}
	last.backings = newBackings(last)
	last.backings.load()
	if last.backings.table[fileID{1, 2}].id != 7 {
		t.Errorf("the backing table beside it: %+v", last.backings.table)
	}
}

// fakeBridge is go-fuse's bridge as kernelFS sees it, recording the opens
// and releases it is asked for.
type fakeBridge struct {
	fuse.RawFileSystem // nil: any other call panics
	opened, released   []uint64
}

func (b *fakeBridge) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	out.Fh = uint64(100 + len(b.opened))
	b.opened = append(b.opened, in.NodeId)
	return fuse.OK
}

func (b *fakeBridge) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	out.Fh = uint64(100 + len(b.opened))
	out.NodeId = 77
	b.opened = append(b.opened, in.NodeId)
	return fuse.OK
}

func (b *fakeBridge) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	b.released = append(b.released, in.Fh)
}

// An open the kernel sends again (its process died before answering it)
// shows the writer that process recorded for it stale: the next process,
// which reopened it with the others, releases it, for an OPEN as for a
// CREATE, and records the handle it answers with instead.
func TestResentOpenDropsItsStaleWriter(t *testing.T) {
	for _, op := range []string{"open", "create"} {
		t.Run(op, func(t *testing.T) {
			state := stateForTest(t)
			dead := &conn{state: state, log: slog.New(slog.DiscardHandler)}
			dead.writers = newWriters(dead)
			staleFh := uint64(1)<<fhGenShift | 3<<fhIDShift | syscall.O_WRONLY
			liveFh := uint64(1)<<fhGenShift | 4<<fhIDShift | syscall.O_RDWR
			dead.writers.opened(writer{fh: staleFh, node: 10, unique: 500})
			dead.writers.opened(writer{fh: liveFh, node: 11, unique: 502})

			next := &conn{state: state, log: slog.New(slog.DiscardHandler)}
			next.writers = newWriters(next)
			bridge := &fakeBridge{}
			k := newKernelFS(bridge, nil, 2, true, next.writers)
			next.writers.load()
			// As resumeWriters leaves them: both reopened, nodes held.
			k.counts[10], k.counts[11], k.counts[1] = 1, 1, 1
			k.reopened[staleFh], k.reopened[liveFh] = 40, 41

			resent := uint64(500) | resendBit
			switch op {
			case "open":
				var out fuse.OpenOut
				k.Open(nil, &fuse.OpenIn{InHeader: fuse.InHeader{NodeId: 10, Unique: resent}, Flags: syscall.O_WRONLY}, &out)
			case "create":
				var out fuse.CreateOut
				k.Create(nil, &fuse.CreateIn{InHeader: fuse.InHeader{NodeId: 1, Unique: resent}, Flags: syscall.O_WRONLY}, "f", &out)
			}
			if len(bridge.released) != 1 || bridge.released[0] != 40 {
				t.Fatalf("released %v, want the stale writer's reopen (40)", bridge.released)
			}
			last := &conn{state: state, log: slog.New(slog.DiscardHandler)}
			last.writers = newWriters(last)
			fhs := map[uint64]bool{}
			for _, e := range last.writers.load() {
				fhs[e.fh] = true
			}
			if len(fhs) != 2 || fhs[staleFh] || !fhs[liveFh] {
				t.Fatalf("writers after the resent %s: %v, want the live one and the new one", op, fhs)
			}
		})
	}
}

// recyclingBridge hands out handles as go-fuse's bridge does: a released
// handle is the next one given. afterRecycle runs inside a release once
// its handle is free again, where another request may take it.
type recyclingBridge struct {
	fuse.RawFileSystem // nil: any other call panics
	free               []uint64
	next               uint64
	nodes              map[uint64]uint64 // bridge handle -> node
	afterRecycle       func()
}

func (b *recyclingBridge) take(node uint64) uint64 {
	var fh uint64
	if n := len(b.free); n > 0 {
		fh, b.free = b.free[n-1], b.free[:n-1]
	} else {
		b.next++
		fh = b.next
	}
	b.nodes[fh] = node
	return fh
}

func (b *recyclingBridge) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	out.Fh = b.take(in.NodeId)
	return fuse.OK
}

func (b *recyclingBridge) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	if b.nodes[in.Fh] != in.NodeId {
		return fuse.EBADF
	}
	return fuse.OK
}

func (b *recyclingBridge) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	delete(b.nodes, in.Fh)
	b.free = append(b.free, in.Fh)
	if f := b.afterRecycle; f != nil {
		b.afterRecycle = nil
		f()
	}
}

// A release frees its bridge handle before kernelFS has dropped the
// writer it recorded; an open in that window gets the same bridge
// handle. It must still get a kernel handle of its own, and the state a
// next process loads must hold its writer (the one the kernel still
// writes through) and not the released one; else that process would take
// the open file for a closed one, and its flush for another file's.
func TestReleasedHandleIsNotGivenAgainBeforeItsWriterIsDropped(t *testing.T) {
	state := stateForTest(t)
	c := &conn{state: state, log: slog.New(slog.DiscardHandler)}
	c.writers = newWriters(c)
	bridge := &recyclingBridge{nodes: map[uint64]uint64{}}
	k := newKernelFS(bridge, nil, 1, false, c.writers)

	var first fuse.OpenOut
	if st := k.Open(nil, &fuse.OpenIn{InHeader: fuse.InHeader{NodeId: 10, Unique: 2}, Flags: syscall.O_WRONLY}, &first); !st.Ok() {
		t.Fatal(st)
	}
	var second fuse.OpenOut
	bridge.afterRecycle = func() {
		if st := k.Open(nil, &fuse.OpenIn{InHeader: fuse.InHeader{NodeId: 11, Unique: 4}, Flags: syscall.O_WRONLY}, &second); !st.Ok() {
			t.Fatal(st)
		}
	}
	k.Release(nil, &fuse.ReleaseIn{InHeader: fuse.InHeader{NodeId: 10}, Fh: first.Fh})
	if second.Fh == first.Fh {
		t.Errorf("the open in the release's window was given the released kernel handle %#x", first.Fh)
	}

	next := &conn{state: state, log: slog.New(slog.DiscardHandler)}
	next.writers = newWriters(next)
	loaded := next.writers.load()
	if len(loaded) != 1 || loaded[0].node != 11 || loaded[0].fh != second.Fh {
		t.Fatalf("a next process loads the writers %+v, want only node 11's, handle %#x", loaded, second.Fh)
	}
	// The kernel's flush of the second file reaches the second file.
	if st := k.Flush(nil, &fuse.FlushIn{InHeader: fuse.InHeader{NodeId: 11}, Fh: second.Fh}); !st.Ok() {
		t.Errorf("flush of the open file: %v", st)
	}
	// A handle released is not known any more.
	if st := k.Flush(nil, &fuse.FlushIn{InHeader: fuse.InHeader{NodeId: 10}, Fh: first.Fh}); st.Ok() && first.Fh != second.Fh {
		t.Errorf("flush of a released handle: %v, want an error", st)
	}
}
