package fs

import (
	"encoding/binary"
	"sync"
)

// writers are the file handles the kernel holds open for writing, kept in
// the handover state so that a process that takes the mount over knows
// them before it answers anything. With passthrough the kernel writes to
// the data file with no request at all: a process that did not know the
// file was open would take it for a closed file owed to the store, send
// a part of it, call it clean, and then drop the data file as torn when
// it grew. So an adopting process reopens every inherited writer first
// (kernelFS.resumeWriters), and a writer's entry stays until its release.
//
// An entry is written before the open's answer. If the process died
// between the two, the kernel never got the handle and asks again
// (FUSE_NOTIFY_RESEND) with the same request ID: the entry is stale, and
// the next process drops it when it sees that ID.
type writers struct {
	c *conn

	mu     sync.Mutex
	slots  stateTable
	byFh   map[uint64]writerSlot // kernel handle -> entry
	unique map[uint64]writer     // inherited: open request ID -> entry
}

// writer is one open-for-writing handle of the kernel.
type writer struct {
	fh     uint64 // the kernel's handle
	node   uint64 // its node ID (the inode number)
	unique uint64 // the ID of the open request that made it
}

type writerSlot struct {
	writer
	slot int
}

// A slot: handle, node, request ID (8 bytes each), spare (4), in use (4).
// After the backing table (4096 + 24 × 4096 bytes).
const writerSlotSize = 32

// resendBit marks a request the kernel sends again (FUSE_UNIQUE_RESEND).
const resendBit = 1 << 63

func newWriters(c *conn) *writers {
	return &writers{c: c, byFh: map[uint64]writerSlot{}, unique: map[uint64]writer{},
		slots: stateTable{off: 128 << 10, slotSize: writerSlotSize, slots: 8192}}
}

// load returns the writers of the processes before this one.
func (w *writers) load() []writer {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []writer
	for slot, s := range w.slots.load(w.c.state) {
		e := writer{fh: binary.LittleEndian.Uint64(s), node: binary.LittleEndian.Uint64(s[8:]), unique: binary.LittleEndian.Uint64(s[16:])}
		w.byFh[e.fh] = writerSlot{e, slot}
		w.unique[e.unique] = e
		out = append(out, e)
	}
	return out
}

// opened records a handle the kernel is about to be given.
func (w *writers) opened(e writer) {
	e.unique &^= resendBit
	w.mu.Lock()
	defer w.mu.Unlock()
	slot := w.slots.take()
	if slot < 0 {
		// Only a takeover meanwhile would miss it (the race above).
		w.c.log.Warn("too many files open for writing to record for a takeover", "max", w.slots.slots)
		return
	}
	w.byFh[e.fh] = writerSlot{e, slot}
	s := make([]byte, writerSlotSize)
	binary.LittleEndian.PutUint64(s, e.fh)
	binary.LittleEndian.PutUint64(s[8:], e.node)
	binary.LittleEndian.PutUint64(s[16:], e.unique)
	binary.LittleEndian.PutUint32(s[28:], 1)
	w.slots.put(w.c.state, slot, s)
}

// released drops the entry of a handle the kernel let go of.
func (w *writers) released(fh uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	e, ok := w.byFh[fh]
	if !ok {
		return
	}
	delete(w.byFh, fh)
	delete(w.unique, e.unique)
	w.slots.release(w.c.state, e.slot)
}

// stale returns the inherited writer whose open the kernel sends again
// as the request unique: it never had that handle.
func (w *writers) stale(unique uint64) (e writer, ok bool) {
	if unique&resendBit == 0 {
		return writer{}, false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	e, ok = w.unique[unique&^resendBit]
	return e, ok
}
