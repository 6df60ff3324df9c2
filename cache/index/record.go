package index

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"syscall"
)

// State is where a file's bytes are.
type State uint8

const (
	// Dirty: only the local data file has the newest bytes; an upload is owed.
	Dirty State = iota + 1
	// Uploading: an upload of the current generation has started.
	Uploading
	// Clean: the local data file and the store hold the same bytes.
	Clean
	// Remote: only the store has the bytes; there is no local data file.
	Remote
	// Local: the file lives in a tree kept out of the store (url_cache by
	// default); it is never uploaded and never evicted.
	Local
	// Special: a FIFO, socket or device node. It lives in the index only:
	// it has no bytes, and is never uploaded or evicted.
	Special
)

func (s State) String() string {
	switch s {
	case Dirty:
		return "dirty"
	case Uploading:
		return "uploading"
	case Clean:
		return "clean"
	case Remote:
		return "remote"
	case Local:
		return "local"
	case Special:
		return "special"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Record is one index entry: a file or a directory.
type Record struct {
	Dir   bool
	State State  // files only
	Ino   uint64 // stable inode number, allocated once
	Size  int64
	MTime int64 // unix nanoseconds
	// Gen increases with every local change; an upload commits only if the
	// generation it read is still current, so the newest write always wins.
	Gen uint64
	// Data names the local data file; empty for Remote.
	Data string
	// InStore says an object may exist at this key, so removing the file
	// owes the store a DeleteObject (a tombstone).
	InStore bool
	// StoreMTime is the object's modification time as the store reported
	// it, used to notice a rewrite by another host.
	StoreMTime int64
	// Mode holds the permission bits (with setuid, setgid and sticky) when
	// ModeSet; otherwise the mount's file_mode or dir_mode applies.
	Mode    uint32
	ModeSet bool
	// MadeHere marks a directory made by this mount's mkdir rather than
	// learned from the store: every object below it was written through
	// this index, unless another host shares the bucket.
	MadeHere bool

	// Owner: when OwnerSet, UID and GID; otherwise the mount's uid and gid.
	OwnerSet bool
	UID, GID uint32
	// ATime and CTime are unix nanoseconds; 0 means MTime.
	ATime, CTime int64
	// Kind is the file type of a record that is neither a regular file
	// nor a directory: syscall.S_IFLNK, S_IFIFO, S_IFSOCK, S_IFCHR or
	// S_IFBLK; 0 otherwise. Rdev is a device node's device number.
	Kind, Rdev uint32
	// Link is a symlink's target, once known (a symlink learned from the
	// store is read on first readlink).
	Link string
	// MetaOwed says the owner, mode or times changed after the object was
	// sent: the store owes a metadata-only update (a server-side copy).
	MetaOwed bool
	// MetaUnknown marks a record learned from a LIST, which carries no
	// user metadata: the object's owner, mode and time are not read yet.
	MetaUnknown bool
	// MoveFrom, set by a directory rename, is the key this file's object
	// still sits at: the store owes a server-side copy to this key and a
	// delete of that one (see moveObject). Reads use that key until then.
	MoveFrom string
	// CRC32C is the CRC-32C (Castagnoli) of the file's bytes as they were
	// uploaded or verified on arrival, when HasCRC; the object carries it
	// as metadata, and the scrub checks the local copy against it.
	CRC32C uint32
	HasCRC bool
}

// Stored says the store holds this version's bytes (Clean or Remote).
func (r Record) Stored() bool { return r.State == Clean || r.State == Remote }

// OwesUpload says r is a file whose bytes the store does not have yet.
func (r Record) OwesUpload() bool {
	return !r.Dir && (r.State == Dirty || r.State == Uploading)
}

// ObjectKey is the key the bytes of r, the record at p, sit at in the
// store now.
func (r Record) ObjectKey(p string) string {
	if r.MoveFrom != "" {
		return r.MoveFrom
	}
	return p
}

// RecordVersion is the format of records written now. Version 2 adds the
// owner, times, kind, device, link target and the metadata flags after the
// data name; version 3 adds the CRC-32C of the bytes (flagCRC) at the end.
// Older records still decode.
const RecordVersion = 3

const (
	flagDir = 1 << iota
	flagInStore
	flagMadeHere
	flagModeSet
	flagOwnerSet
	flagMetaOwed
	flagMetaUnknown
	flagCRC
)

func (r *Record) Encode() []byte {
	b := make([]byte, 0, 64+len(r.Data))
	var flags byte
	if r.Dir {
		flags |= flagDir
	}
	if r.InStore {
		flags |= flagInStore
	}
	for _, f := range []struct {
		on  bool
		bit byte
	}{{r.MadeHere, flagMadeHere}, {r.ModeSet, flagModeSet}, {r.OwnerSet, flagOwnerSet}, {r.MetaOwed, flagMetaOwed}, {r.MetaUnknown, flagMetaUnknown}, {r.HasCRC, flagCRC}} {
		if f.on {
			flags |= f.bit
		}
	}
	b = append(b, RecordVersion, flags, byte(r.State))
	b = binary.AppendUvarint(b, r.Ino)
	b = binary.AppendVarint(b, r.Size)
	b = binary.AppendVarint(b, r.MTime)
	b = binary.AppendUvarint(b, r.Gen)
	b = binary.AppendVarint(b, r.StoreMTime)
	b = binary.AppendUvarint(b, uint64(r.Mode))
	b = binary.AppendUvarint(b, uint64(len(r.Data)))
	b = append(b, r.Data...)
	b = binary.AppendUvarint(b, uint64(r.UID))
	b = binary.AppendUvarint(b, uint64(r.GID))
	b = binary.AppendVarint(b, r.ATime)
	b = binary.AppendVarint(b, r.CTime)
	b = binary.AppendUvarint(b, uint64(r.Kind))
	b = binary.AppendUvarint(b, uint64(r.Rdev))
	b = binary.AppendUvarint(b, uint64(len(r.Link)))
	b = append(b, r.Link...)
	b = binary.AppendUvarint(b, uint64(len(r.MoveFrom)))
	b = append(b, r.MoveFrom...)
	if r.HasCRC {
		b = binary.BigEndian.AppendUint32(b, r.CRC32C)
	}
	return b
}

var ErrCorrupt = errors.New("corrupt index record")

// Decode parses an index value. It never panics on bad input.
func Decode(b []byte) (Record, error) {
	var r Record
	if len(b) < 3 {
		return r, ErrCorrupt
	}
	version := b[0]
	if version < 1 || version > RecordVersion {
		return r, fmt.Errorf("%w: version %d", ErrCorrupt, b[0])
	}
	flags := b[1]
	r.Dir = flags&flagDir != 0
	r.InStore = flags&flagInStore != 0
	r.MadeHere = flags&flagMadeHere != 0
	r.ModeSet = flags&flagModeSet != 0
	r.OwnerSet = flags&flagOwnerSet != 0
	r.MetaOwed = flags&flagMetaOwed != 0
	r.MetaUnknown = flags&flagMetaUnknown != 0
	r.State = State(b[2])
	b = b[3:]
	ok := true
	uv := func() uint64 { return readVarint(&b, &ok, binary.Uvarint) }
	sv := func() int64 { return readVarint(&b, &ok, binary.Varint) }
	r.Ino = uv()
	r.Size = sv()
	r.MTime = sv()
	r.Gen = uv()
	r.StoreMTime = sv()
	mode := uv()
	r.Data = str(uv, &b, &ok)
	if version == 1 {
		// Version 1 kept mode 0 for "the mount's default".
		r.ModeSet = mode != 0
	} else {
		uid, gid := uv(), uv()
		r.ATime, r.CTime = sv(), sv()
		kind, rdev := uv(), uv()
		r.Link = str(uv, &b, &ok)
		r.MoveFrom = str(uv, &b, &ok)
		if version >= 3 && flags&flagCRC != 0 {
			if len(b) < 4 {
				return Record{}, fmt.Errorf("%w: checksum", ErrCorrupt)
			}
			r.CRC32C, r.HasCRC, b = binary.BigEndian.Uint32(b), true, b[4:]
		}
		if uid > math.MaxUint32 || gid > math.MaxUint32 || rdev > math.MaxUint32 || !validKind(r, uint32(kind)) {
			return Record{}, fmt.Errorf("%w: owner, kind or device", ErrCorrupt)
		}
		r.UID, r.GID, r.Kind, r.Rdev = uint32(uid), uint32(gid), uint32(kind), uint32(rdev)
	}
	if !ok || len(b) != 0 {
		return Record{}, ErrCorrupt
	}
	if mode > 0o7777 {
		return Record{}, fmt.Errorf("%w: mode %o", ErrCorrupt, mode)
	}
	r.Mode = uint32(mode)
	if r.State == Special {
		if r.Dir || r.Data != "" || r.Size != 0 {
			return Record{}, fmt.Errorf("%w: special file with data", ErrCorrupt)
		}
		return r, nil
	}
	if !r.Dir && (r.State < Dirty || r.State > Local) || r.Size < 0 {
		return Record{}, fmt.Errorf("%w: state %d size %d", ErrCorrupt, r.State, r.Size)
	}
	if !r.Dir && (r.State == Remote) != (r.Data == "") {
		return Record{}, fmt.Errorf("%w: state %s with data %q", ErrCorrupt, r.State, r.Data)
	}
	if strings.ContainsAny(r.Data, "/\\.\x00") {
		return Record{}, fmt.Errorf("%w: data name %q", ErrCorrupt, r.Data)
	}
	return r, nil
}

// readVarint decodes one varint at the start of *b with decode and moves
// past it; one that does not decode clears *ok.
func readVarint[T uint64 | int64](b *[]byte, ok *bool, decode func([]byte) (T, int)) T {
	v, n := decode(*b)
	if n <= 0 {
		*ok = false
		return 0
	}
	*b = (*b)[n:]
	return v
}

// str reads a length-prefixed string from *b.
func str(uv func() uint64, b *[]byte, ok *bool) string {
	n := uv()
	if !*ok || n > uint64(len(*b)) {
		*ok = false
		return ""
	}
	s := string((*b)[:n])
	*b = (*b)[n:]
	return s
}

// validKind reports whether kind fits the record: a special kind only on
// a Special record (a symlink on a file that has bytes), none on others.
func validKind(r Record, kind uint32) bool {
	switch kind {
	case 0:
		return r.State != Special
	case syscall.S_IFLNK:
		return !r.Dir && r.State != Special && r.State != Local
	case syscall.S_IFIFO, syscall.S_IFSOCK, syscall.S_IFCHR, syscall.S_IFBLK:
		return r.State == Special
	}
	return false
}

// A record's key is its parent and its name (entryPrefix in keys.go), so
// that one prefix scan lists a directory's direct children and nothing
// below them.

// EntryKey is the key of the record at p.
func EntryKey(p string) []byte {
	parent, name := SplitPath(p)
	k := make([]byte, 0, len(p)+2)
	k = append(k, entryPrefix)
	k = append(k, parent...)
	k = append(k, 0)
	return append(k, name...)
}

// ChildrenPrefix is the key prefix of the records of dir's children.
func ChildrenPrefix(dir string) []byte {
	k := make([]byte, 0, len(dir)+2)
	k = append(k, entryPrefix)
	k = append(k, dir...)
	return append(k, 0)
}

// PathOfEntryKey is the path an n key (EntryKey) is the record of.
func PathOfEntryKey(k []byte) string {
	k = k[1:]
	for i, b := range k {
		if b == 0 {
			return JoinPath(string(k[:i]), string(k[i+1:]))
		}
	}
	return string(k)
}

// ParentOf is the directory holding p ("" for a top-level name).
func ParentOf(p string) string {
	parent, _ := SplitPath(p)
	return parent
}

// SplitPath splits "a/b/c" into "a/b" and "c"; a top-level name has parent "".
func SplitPath(p string) (parent, name string) {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i], p[i+1:]
	}
	return "", p
}

// JoinPath joins a directory path and a name.
func JoinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}
