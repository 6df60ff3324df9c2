package cache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
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
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// record is one index entry: a file or a directory.
type record struct {
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
	// Mode holds permission bits set by create or chmod; 0 means the
	// mount's default. It is local: the store keeps no modes.
	Mode uint32
	// MadeHere marks a directory made by this mount's mkdir rather than
	// learned from the store: every object below it was written through
	// this index, unless another host shares the bucket.
	MadeHere bool
}

const recordVersion = 1

const (
	flagDir = 1 << iota
	flagInStore
	flagMadeHere
)

func (r *record) encode() []byte {
	b := make([]byte, 0, 64+len(r.Data))
	var flags byte
	if r.Dir {
		flags |= flagDir
	}
	if r.InStore {
		flags |= flagInStore
	}
	if r.MadeHere {
		flags |= flagMadeHere
	}
	b = append(b, recordVersion, flags, byte(r.State))
	b = binary.AppendUvarint(b, r.Ino)
	b = binary.AppendVarint(b, r.Size)
	b = binary.AppendVarint(b, r.MTime)
	b = binary.AppendUvarint(b, r.Gen)
	b = binary.AppendVarint(b, r.StoreMTime)
	b = binary.AppendUvarint(b, uint64(r.Mode))
	b = binary.AppendUvarint(b, uint64(len(r.Data)))
	return append(b, r.Data...)
}

var errCorruptRecord = errors.New("corrupt index record")

// decodeRecord parses an index value. It never panics on bad input.
func decodeRecord(b []byte) (record, error) {
	var r record
	if len(b) < 3 {
		return r, errCorruptRecord
	}
	if b[0] != recordVersion {
		return r, fmt.Errorf("%w: version %d", errCorruptRecord, b[0])
	}
	flags := b[1]
	r.Dir = flags&flagDir != 0
	r.InStore = flags&flagInStore != 0
	r.MadeHere = flags&flagMadeHere != 0
	r.State = State(b[2])
	b = b[3:]
	var ok bool
	uv := func() uint64 {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			ok = false
			return 0
		}
		b = b[n:]
		return v
	}
	sv := func() int64 {
		v, n := binary.Varint(b)
		if n <= 0 {
			ok = false
			return 0
		}
		b = b[n:]
		return v
	}
	ok = true
	r.Ino = uv()
	r.Size = sv()
	r.MTime = sv()
	r.Gen = uv()
	r.StoreMTime = sv()
	mode := uv()
	n := uv()
	if !ok || n != uint64(len(b)) {
		return record{}, errCorruptRecord
	}
	r.Data = string(b)
	if mode > 0o7777 {
		return record{}, fmt.Errorf("%w: mode %o", errCorruptRecord, mode)
	}
	r.Mode = uint32(mode)
	if !r.Dir && (r.State < Dirty || r.State > Local) || r.Size < 0 {
		return record{}, fmt.Errorf("%w: state %d size %d", errCorruptRecord, r.State, r.Size)
	}
	if !r.Dir && (r.State == Remote) != (r.Data == "") {
		return record{}, fmt.Errorf("%w: state %s with data %q", errCorruptRecord, r.State, r.Data)
	}
	if strings.ContainsAny(r.Data, "/\\.\x00") {
		return record{}, fmt.Errorf("%w: data name %q", errCorruptRecord, r.Data)
	}
	return r, nil
}

// Index keys. Entries are keyed by parent and name so that one prefix scan
// lists a directory's direct children and nothing below them.
const (
	entryPrefix   = 'n' // n<parent>\x00<name> -> record
	pendingPrefix = 'p' // p<path> -> "" : an upload or delete is owed
)

func entryKey(p string) []byte {
	parent, name := splitPath(p)
	k := make([]byte, 0, len(p)+2)
	k = append(k, entryPrefix)
	k = append(k, parent...)
	k = append(k, 0)
	return append(k, name...)
}

func childrenPrefix(dir string) []byte {
	k := make([]byte, 0, len(dir)+2)
	k = append(k, entryPrefix)
	k = append(k, dir...)
	return append(k, 0)
}

func pendingKey(p string) []byte {
	return append([]byte{pendingPrefix}, p...)
}

// splitPath splits "a/b/c" into "a/b" and "c"; a top-level name has parent "".
func splitPath(p string) (parent, name string) {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i], p[i+1:]
	}
	return "", p
}

// joinPath joins a directory path and a name.
func joinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}
