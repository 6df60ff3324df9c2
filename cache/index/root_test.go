package index

import "testing"

// The root's kept attributes decode from both layouts: the one before
// times were kept, and the one with a mode that was set (0000 included).
func TestRootAttrsLayouts(t *testing.T) {
	old := []byte{0o750&0x7f | 0x80, 0o750 >> 7, 34, 35} // mode 0750, uid 33, gid 34
	a, err := decodeRootAttrs(old)
	if err != nil || !a.ModeSet || a.Mode != 0o750 || !a.OwnerSet || a.UID != 33 || a.GID != 34 || a.MTime != 0 {
		t.Errorf("old layout: %+v %v", a, err)
	}
	for _, want := range []RootAttrs{{ModeSet: true, MTime: 5, CTime: 6}, {OwnerSet: true, UID: 1, GID: 2, MTime: -1, CTime: 1 << 62}} {
		if got, err := decodeRootAttrs(want.encode()); err != nil || got != want {
			t.Errorf("round trip of %+v: %+v %v", want, got, err)
		}
	}
	if _, err := decodeRootAttrs(append(RootAttrs{}.encode(), 1)); err == nil {
		t.Error("trailing bytes accepted")
	}
	if _, err := decodeRootAttrs([]byte{0x80}); err == nil {
		t.Error("a cut varint accepted")
	}
}
