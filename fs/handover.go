package fs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Handover is what a process needs to go on serving a live mount: the
// /dev/fuse descriptor and the connection's state, kept in a memory file
// (a memfd) so that it outlives the process that wrote it, in systemd's
// file-descriptor store, across an exec, or passed on a Unix socket.
//
// The state is the kernel's INIT request (there is no second INIT, so the
// next process replays it to itself), the mount's device number (so that
// a descriptor is only ever used for the mount it was made for) and the
// generation of the last process to serve it (file handles carry it, so
// that each process tells its own from those it inherited).
type Handover struct {
	Dev   *os.File // /dev/fuse
	State *os.File // memfd
}

// Close closes both descriptors; the connection lives on while another
// process holds its own copy.
func (h Handover) Close() {
	if h.Dev != nil {
		h.Dev.Close()
	}
	if h.State != nil {
		h.State.Close()
	}
}

// Names of the descriptors in systemd's store (FDNAME) and in LISTEN_FDNAMES.
const (
	DevFDName   = "s3mediafs-fuse"
	StateFDName = "s3mediafs-state"
)

const stateMagic = "s3mfsHO2"

type handoverState struct {
	gen      uint64
	device   string // major:minor of the mount, as /proc/self/mountinfo shows it
	uid, gid uint32 // the mount's default owner (MountOptions.UID, GID)
	init     []byte
}

func newStateFile(s handoverState) (*os.File, error) {
	fd, err := unix.MemfdCreate("s3mediafs-state", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), "s3mediafs-state")
	if err := writeState(f, s); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func writeState(f *os.File, s handoverState) error {
	var b bytes.Buffer
	b.WriteString(stateMagic)
	binary.Write(&b, binary.LittleEndian, uint32(s.gen))
	binary.Write(&b, binary.LittleEndian, s.uid)
	binary.Write(&b, binary.LittleEndian, s.gid)
	binary.Write(&b, binary.LittleEndian, uint16(len(s.device)))
	b.WriteString(s.device)
	binary.Write(&b, binary.LittleEndian, uint16(len(s.init)))
	b.Write(s.init)
	if _, err := f.WriteAt(b.Bytes(), 0); err != nil {
		return fmt.Errorf("write the mount's state: %w", err)
	}
	return nil
}

var errBadState = errors.New("not an s3mediafs mount state")

func readState(f *os.File) (handoverState, error) {
	b, err := io.ReadAll(io.NewSectionReader(f, 0, 64<<10))
	if err != nil {
		return handoverState{}, fmt.Errorf("read the mount's state: %w", err)
	}
	r := bytes.NewReader(b)
	magic := make([]byte, len(stateMagic))
	var gen, uid, gid uint32
	var n uint16
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != stateMagic {
		return handoverState{}, errBadState
	}
	for _, v := range []any{&gen, &uid, &gid, &n} {
		if binary.Read(r, binary.LittleEndian, v) != nil {
			return handoverState{}, errBadState
		}
	}
	dev := make([]byte, n)
	if _, err := io.ReadFull(r, dev); err != nil || binary.Read(r, binary.LittleEndian, &n) != nil {
		return handoverState{}, errBadState
	}
	init := make([]byte, n)
	if _, err := io.ReadFull(r, init); err != nil {
		return handoverState{}, errBadState
	}
	return handoverState{gen: uint64(gen), device: string(dev), uid: uid, gid: gid, init: init}, nil
}

// Owner returns the mount's default owner, which a process taking it over
// cannot read from the mount point: a stat of it would wait for the
// daemon that process is about to become.
func (h Handover) Owner() (uid, gid uint32, err error) {
	s, err := readState(h.State)
	return s.uid, s.gid, err
}

// Device returns the major:minor of the mount a handover is for, as
// /proc/self/mountinfo shows it.
func (h Handover) Device() (string, error) {
	s, err := readState(h.State)
	return s.device, err
}

// nextGen is the generation after gen, within the bits a handle has.
func nextGen(gen uint64) uint64 {
	gen = (gen + 1) & maxGen
	if gen == 0 {
		gen = 1
	}
	return gen
}
