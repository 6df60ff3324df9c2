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
	slots     stateTable
	table     map[fileID]backingSlot // data file -> registration
	byID      map[int32]fileID
	inherited map[int32]bool
}

type fileID struct{ dev, ino uint64 }

type backingSlot struct {
	id   int32
	slot int
}

func newBackings(c *conn) *backings {
	return &backings{c: c, table: map[fileID]backingSlot{}, byID: map[int32]fileID{}, inherited: map[int32]bool{},
		// dev, ino (8 bytes each), id (4), in use (4)
		slots: stateTable{off: 4096, slotSize: 24, slots: 4096}}
}

// load reads the registrations of the processes before this one.
func (b *backings) load() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for slot, s := range b.slots.load(b.c.state) {
		f := fileID{binary.LittleEndian.Uint64(s), binary.LittleEndian.Uint64(s[8:])}
		id := int32(binary.LittleEndian.Uint32(s[16:]))
		b.table[f] = backingSlot{id: id, slot: slot}
		b.byID[id] = f
		b.inherited[id] = true
	}
}

func (b *backings) write(slot int, f fileID, id int32) {
	s := make([]byte, b.slots.slotSize)
	binary.LittleEndian.PutUint64(s, f.dev)
	binary.LittleEndian.PutUint64(s[8:], f.ino)
	binary.LittleEndian.PutUint32(s[16:], uint32(id))
	binary.LittleEndian.PutUint32(s[20:], 1)
	b.slots.put(b.c.state, slot, s)
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
	r := backingSlot{id: int32(id), slot: b.slots.take()}
	b.table[f] = r
	b.byID[r.id] = f
	if r.slot >= 0 {
		// A full table only costs a later process the sharing.
		b.write(r.slot, f, r.id)
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
			b.slots.release(b.c.state, r.slot)
		}
	}
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(b.c.fd), iocBackingClose, uintptr(unsafe.Pointer(&id)))
	return errno
}
