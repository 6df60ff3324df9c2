package fs

import (
	"encoding/binary"
	"sync"
	"syscall"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// backings are the passthrough backing files registered on the
// connection, kept in the handover state so that the processes after this
// one know them.
//
// The kernel lets an inode's opens share one backing file (the first
// open's) and refuses another while any is open. go-fuse registers a
// file once per inode, and lets the registration go when the last open
// it knows of is released; a process that adopted the mount does not know
// the opens made before it. So a registration is recorded by the data
// file it is for; a later process that registers the same data file gets
// the recorded backing ID back, and never lets an inherited one go (the
// opens from before may still use it; the kernel frees it at unmount).
type backings struct {
	c *conn

	mu        sync.Mutex
	table     map[fileID]backingSlot // data file -> registration
	byID      map[int32]fileID
	inherited map[int32]bool
	free      []int // unused slots
	next      int   // first slot never used
}

type fileID struct{ dev, ino uint64 }

type backingSlot struct {
	id   int32
	slot int
}

// The table lives after the state's header, one slot per registration.
const (
	backingTableOff = 4096
	backingSlotSize = 24 // dev, ino (8 bytes each), id (4), in use (4)
	backingSlots    = 4096
)

func newBackings(c *conn) *backings {
	return &backings{c: c, table: map[fileID]backingSlot{}, byID: map[int32]fileID{}, inherited: map[int32]bool{}}
}

// load reads the registrations of the processes before this one.
func (b *backings) load() {
	buf := make([]byte, backingSlots*backingSlotSize)
	n, _ := b.c.state.ReadAt(buf, backingTableOff)
	b.mu.Lock()
	defer b.mu.Unlock()
	for slot := 0; (slot+1)*backingSlotSize <= n; slot++ {
		s := buf[slot*backingSlotSize:]
		if binary.LittleEndian.Uint32(s[20:]) == 0 {
			b.free = append(b.free, slot)
			continue
		}
		f := fileID{binary.LittleEndian.Uint64(s), binary.LittleEndian.Uint64(s[8:])}
		id := int32(binary.LittleEndian.Uint32(s[16:]))
		b.table[f] = backingSlot{id: id, slot: slot}
		b.byID[id] = f
		b.inherited[id] = true
		b.next = slot + 1
	}
	// Slots below next that were free are reusable; the rest follow next.
	kept := b.free[:0]
	for _, s := range b.free {
		if s < b.next {
			kept = append(kept, s)
		}
	}
	b.free = kept
}

func (b *backings) write(slot int, f fileID, id int32, inUse bool) {
	var s [backingSlotSize]byte
	binary.LittleEndian.PutUint64(s[:], f.dev)
	binary.LittleEndian.PutUint64(s[8:], f.ino)
	binary.LittleEndian.PutUint32(s[16:], uint32(id))
	if inUse {
		binary.LittleEndian.PutUint32(s[20:], 1)
	}
	b.c.state.WriteAt(s[:], int64(backingTableOff+slot*backingSlotSize))
}

func (b *backings) register(m *fuse.BackingMap) (int32, syscall.Errno) {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(m.Fd), &st); err != nil {
		return 0, err.(syscall.Errno)
	}
	f := fileID{uint64(st.Dev), st.Ino}
	b.mu.Lock()
	defer b.mu.Unlock()
	if r, ok := b.table[f]; ok {
		return r.id, 0
	}
	id, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(b.c.fd), iocBackingOpen, uintptr(unsafe.Pointer(m)))
	if errno != 0 {
		return 0, errno
	}
	slot := -1
	switch {
	case len(b.free) > 0:
		slot, b.free = b.free[len(b.free)-1], b.free[:len(b.free)-1]
	case b.next < backingSlots:
		slot = b.next
		b.next++
	}
	r := backingSlot{id: int32(id), slot: slot}
	b.table[f] = r
	b.byID[r.id] = f
	if slot >= 0 {
		// A full table only costs a later process the sharing.
		b.write(slot, f, r.id, true)
	}
	return r.id, 0
}

func (b *backings) unregister(id int32) syscall.Errno {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.inherited[id] {
		return 0
	}
	if f, ok := b.byID[id]; ok {
		r := b.table[f]
		delete(b.table, f)
		delete(b.byID, id)
		if r.slot >= 0 {
			b.write(r.slot, fileID{}, 0, false)
			b.free = append(b.free, r.slot)
		}
	}
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(b.c.fd), iocBackingClose, uintptr(unsafe.Pointer(&id)))
	return errno
}
