package fs

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// TestLookupPathRecorded is the run behind scripts/callpath, which runs
// it twice under -coverprofile, with and without one LOOKUP of a media
// file's name through the kernel, go-fuse, fs and the cache: the blocks
// counted more often in the first run are what that lookup executes. The
// case is warm (the index knows the name) or cold (only the store has it,
// the directories above it already looked up).
func TestLookupPathRecorded(t *testing.T) {
	lookup := os.Getenv("S3MEDIAFS_CALLPATH_LOOKUP")
	if lookup == "" {
		t.Skip("run by scripts/callpath")
	}
	const name = "local_content/ab/cd/media"
	mem := objstore.NewMem()
	mem.SetObject(name, payload(1000, 1))
	mnt, c := testMount(t, mem, "")
	if _, err := os.Stat(filepath.Join(mnt, filepath.Dir(name))); err != nil {
		t.Fatal(err)
	}
	switch os.Getenv("S3MEDIAFS_CALLPATH_CASE") {
	case "warm":
		if _, err := c.Stat(context.Background(), name); err != nil {
			t.Fatal(err)
		}
	case "cold":
	default:
		t.Fatal("S3MEDIAFS_CALLPATH_CASE is warm or cold")
	}
	drain(t, c)
	if lookup == "1" {
		if _, err := os.Stat(filepath.Join(mnt, name)); err != nil {
			t.Fatal(err)
		}
		drain(t, c)
	}
}
