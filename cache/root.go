package cache

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// The mount's root directory has no record of its own (it has no key in
// the store); its permission bits and owner, once set, are kept here.
var rootKey = []byte("s:root") // uvarint mode, uvarint uid+1, uvarint gid+1 (0: unset)

// Owner is a file's owner and group.
type Owner struct{ UID, GID uint32 }

// rootMeta is what is kept of the root: mode 0 and a nil owner mean the
// mount's defaults.
type rootMeta struct {
	mode  uint32
	owner *Owner
}

func (m rootMeta) encode() []byte {
	var uid, gid uint64
	if m.owner != nil {
		uid, gid = uint64(m.owner.UID)+1, uint64(m.owner.GID)+1
	}
	b := binary.AppendUvarint(nil, uint64(m.mode))
	b = binary.AppendUvarint(b, uid)
	return binary.AppendUvarint(b, gid)
}

func decodeRootMeta(b []byte) (rootMeta, error) {
	var vals [3]uint64
	for i := range vals {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return rootMeta{}, fmt.Errorf("%w: root attributes", errCorruptRecord)
		}
		vals[i], b = v, b[n:]
	}
	if vals[0] > 0o7777 || vals[1] > 1<<32 || vals[2] > 1<<32 || (vals[1] == 0) != (vals[2] == 0) {
		return rootMeta{}, fmt.Errorf("%w: root attributes", errCorruptRecord)
	}
	m := rootMeta{mode: uint32(vals[0])}
	if vals[1] != 0 {
		m.owner = &Owner{UID: uint32(vals[1] - 1), GID: uint32(vals[2] - 1)}
	}
	return m, nil
}

func getRootMeta(txn *badger.Txn) (rootMeta, error) {
	item, err := txn.Get(rootKey)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return rootMeta{}, nil
	}
	if err != nil {
		return rootMeta{}, err
	}
	var m rootMeta
	err = item.Value(func(v []byte) error {
		m, err = decodeRootMeta(v)
		return err
	})
	return m, err
}

// RootAttr describes the mount's root directory.
func (c *Cache) RootAttr() Attr {
	a := Attr{Ino: rootIno, Dir: true}
	var m rootMeta
	if err := c.view(func(txn *badger.Txn) (err error) {
		m, err = getRootMeta(txn)
		return err
	}); err != nil {
		c.log.Error("reading the root's attributes failed; showing the defaults", "err", err)
	}
	a.Mode, a.Owner = m.mode, m.owner
	return a
}

// setRoot changes the root's permission bits and/or owner.
func (c *Cache) setRoot(mode *uint32, owner *Owner) (Attr, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.update(func(t *tx) error {
		m, err := getRootMeta(t.txn)
		if err != nil {
			return err
		}
		if mode != nil {
			m.mode = *mode & 0o7777
		}
		if owner != nil {
			m.owner = owner
		}
		return t.txn.Set(rootKey, m.encode())
	})
	if err != nil {
		return Attr{}, err
	}
	return c.RootAttr(), nil
}

// SetRootOwner changes the owner of the mount's root. The kernel has
// checked the caller may (the mount uses default_permissions). Other
// files' owners are the mount's uid and gid.
func (c *Cache) SetRootOwner(o Owner) (Attr, error) { return c.setRoot(nil, &o) }
