package fs

import "os"

// stateTable is a table of fixed-size slots in the handover state (the
// memfd every process serving the mount shares), so that what one process
// records about the connection is there for the processes after it, even
// if it is killed. A slot whose last four bytes are zero is free.
type stateTable struct {
	off      int64 // where the table starts in the state file
	slotSize int
	slots    int

	free []int // free slots below next
	next int   // first slot never used
}

// load returns the slots in use in state, by slot number, and makes the
// rest free.
func (t *stateTable) load(state *os.File) map[int][]byte {
	buf := make([]byte, t.slots*t.slotSize)
	n, _ := state.ReadAt(buf, t.off)
	used := map[int][]byte{}
	t.free, t.next = nil, 0
	for slot := 0; (slot+1)*t.slotSize <= n; slot++ {
		s := buf[slot*t.slotSize : (slot+1)*t.slotSize]
		if s[t.slotSize-4] == 0 && s[t.slotSize-3] == 0 && s[t.slotSize-2] == 0 && s[t.slotSize-1] == 0 {
			continue
		}
		used[slot] = s
		t.next = slot + 1
	}
	for slot := range t.next {
		if used[slot] == nil {
			t.free = append(t.free, slot)
		}
	}
	return used
}

// take returns a free slot, or -1 when the table is full.
func (t *stateTable) take() int {
	switch {
	case len(t.free) > 0:
		slot := t.free[len(t.free)-1]
		t.free = t.free[:len(t.free)-1]
		return slot
	case t.next < t.slots:
		t.next++
		return t.next - 1
	}
	return -1
}

// put writes slot's bytes (slotSize of them, the last four not all zero
// for a slot in use).
func (t *stateTable) put(state *os.File, slot int, b []byte) {
	state.WriteAt(b, t.off+int64(slot*t.slotSize))
}

// release zeroes slot and makes it free.
func (t *stateTable) release(state *os.File, slot int) {
	t.put(state, slot, make([]byte, t.slotSize))
	t.free = append(t.free, slot)
}
