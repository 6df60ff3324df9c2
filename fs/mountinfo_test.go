package fs

import (
	"strings"
	"testing"
)

// The mount table is read for the filesystem on top at a path: a bind mount
// or a partition under it is no reason to refuse (Docker gives a container
// its media store as a bind mount; many operators give media a disk of its
// own), a FUSE mount on top is; its device number ties a handed-over
// connection to it.
func TestMountAtIn(t *testing.T) {
	table := `22 1 8:1 / / rw - ext4 /dev/sda1 rw
40 22 8:2 / /var/lib/synapse/media rw - ext4 /dev/sdb1 rw
41 40 8:2 / /var/lib/synapse/media rw shared:5 - ext4 /dev/sdb1 rw
42 41 0:50 / /var/lib/synapse/media rw - fuse.s3mediafs s3mediafs rw
43 22 0:51 / /srv/with\040space rw - tmpfs tmpfs rw
`
	for p, want := range map[string]MountEntry{
		"/var/lib/synapse/media": {Type: "fuse.s3mediafs", Device: "0:50"},
		"/srv/with space":        {Type: "tmpfs", Device: "0:51"},
		"/srv":                   {},
	} {
		got, err := MountAtIn(strings.NewReader(table), p)
		if err != nil || got != want {
			t.Errorf("MountAtIn(%q) = %+v, %v; want %+v", p, got, err, want)
		}
	}
}
