package fs

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// MountEntry is the mount on top at a path, from /proc/self/mountinfo.
type MountEntry struct {
	Type   string // "fuse.s3mediafs", "ext4"…; "" when nothing is mounted there
	Device string // major:minor
}

// MountAt returns the mount on top at p, reading the mount table only:
// nothing asks the filesystem, which may be a FUSE mount without a daemon.
func MountAt(p string) (MountEntry, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return MountEntry{}, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	return MountAtIn(f, p)
}

// MountDevice returns the major:minor of the mount on top at p.
func MountDevice(p string) (string, error) {
	m, err := MountAt(p)
	if err == nil && m.Type == "" {
		err = fmt.Errorf("nothing is mounted at %s", p)
	}
	return m.Device, err
}

// MountAtIn reads a mountinfo table and returns the last mount at p:
// later lines are mounted over earlier ones.
func MountAtIn(mountinfo io.Reader, p string) (MountEntry, error) {
	sc := bufio.NewScanner(mountinfo)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var m MountEntry
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || unescapeMountinfo(fields[4]) != p {
			continue
		}
		// Optional fields end at "-"; the type follows it.
		if sep := slices.Index(fields[5:], "-"); sep >= 0 && 5+sep+1 < len(fields) {
			m = MountEntry{Type: fields[5+sep+1], Device: fields[2]}
		}
	}
	return m, sc.Err()
}

// unescapeMountinfo undoes the octal escapes (\040 for space…) of mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
