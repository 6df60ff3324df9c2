package index

import (
	"encoding/binary"
	"fmt"
)

// RootAttrs is what the index keeps of the mount's root directory: an
// unset mode and no owner mean the mount's defaults; zero times, the
// mount's start.
type RootAttrs struct {
	Mode         uint32 // permission bits
	ModeSet      bool   // Mode was set (0000 is a mode)
	OwnerSet     bool
	UID, GID     uint32
	MTime, CTime int64 // unix nanoseconds
}

// rootModeSet marks, in the stored mode, a mode that was set.
const rootModeSet = 0o10000

func (a RootAttrs) encode() []byte {
	var uid, gid uint64
	if a.OwnerSet {
		uid, gid = uint64(a.UID)+1, uint64(a.GID)+1
	}
	mode := uint64(a.Mode)
	if a.ModeSet {
		mode |= rootModeSet
	}
	b := binary.AppendUvarint(nil, mode)
	b = binary.AppendUvarint(b, uid)
	b = binary.AppendUvarint(b, gid)
	b = binary.AppendVarint(b, a.MTime)
	return binary.AppendVarint(b, a.CTime)
}

func decodeRootAttrs(b []byte) (RootAttrs, error) {
	bad := fmt.Errorf("%w: root attributes", ErrCorrupt)
	ok := true
	mode := readVarint(&b, &ok, binary.Uvarint)
	uid := readVarint(&b, &ok, binary.Uvarint)
	gid := readVarint(&b, &ok, binary.Uvarint)
	if !ok || mode > rootModeSet|0o7777 || uid > 1<<32 || gid > 1<<32 || (uid == 0) != (gid == 0) {
		return RootAttrs{}, bad
	}
	// Before the set flag, a kept mode was never 0.
	a := RootAttrs{Mode: uint32(mode & 0o7777), ModeSet: mode != 0}
	if uid != 0 {
		a.OwnerSet, a.UID, a.GID = true, uint32(uid-1), uint32(gid-1)
	}
	if len(b) == 0 {
		return a, nil // kept before times were
	}
	a.MTime = readVarint(&b, &ok, binary.Varint)
	a.CTime = readVarint(&b, &ok, binary.Varint)
	if !ok || len(b) != 0 {
		return RootAttrs{}, bad
	}
	return a, nil
}

// Root returns the root's attributes (the zero RootAttrs when none were
// kept).
func (v View) Root() (RootAttrs, error) {
	b, ok, err := v.rootValue()
	if err != nil || !ok {
		return RootAttrs{}, err
	}
	return decodeRootAttrs(b)
}

// SetRoot keeps the root's attributes.
func (t *Tx) SetRoot(a RootAttrs) error { return t.txn.Set(RootKey, a.encode()) }
