// go-fuse's POSIX suite on the mount, in both I/O modes.

package fs

import (
	"sort"
	"testing"

	"github.com/hanwen/go-fuse/v2/posixtest"

	"github.com/s3mediafs/s3mediafs/cache"
	"github.com/s3mediafs/s3mediafs/s3/s3test"
)

// posixSkips lists the go-fuse POSIX cases that do not apply, with why.
// The README repeats this list.
var posixSkips = map[string]string{
	"Link":                "no hard links: one object per key",
	"LinkUnlinkRename":    "no hard links",
	"XAttr":               "no extended attributes (disabled at mount)",
	"XAttrLarge":          "no extended attributes",
	"FcntlFlockLocksFile": "POSIX record locks are not implemented; Synapse takes none",
}

func TestPOSIXSuite(t *testing.T) {
	names := make([]string, 0, len(posixtest.All))
	for name := range posixtest.All {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, mode := range ioModes {
		t.Run(mode.name, func(t *testing.T) {
			for _, name := range names {
				t.Run(name, func(t *testing.T) {
					if why, ok := posixSkips[name]; ok {
						t.Skip(why)
					}
					client, _, _ := s3test.Bucket(t, "")
					mnt, _, _ := testMountWith(t, cache.Options{Store: client}, Options{Passthrough: mode.passthrough})
					posixtest.All[name](t, mnt)
				})
			}
		})
	}
}
