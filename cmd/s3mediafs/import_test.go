// import: --delete-source removes only what the bucket holds byte for byte,
// and symlinks are never followed.

package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for rel, body := range files {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// --delete-source deletes a source file only when the bucket holds the
// same bytes; a key holding a different object (of the same size or
// not) is a conflict: neither overwritten nor deleted, and reported.
func TestImportDeletesOnlyWhatTheBucketHoldsByteForByte(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, map[string]string{
		"local_content/ab/cd/same":      "identical bytes",
		"local_content/ab/cd/samesize":  "local version!!",
		"local_content/ab/cd/othersize": "local version",
		"local_content/ab/cd/new":       "only local",
	})
	store := objstore.NewMem()
	store.SetObject("local_content/ab/cd/same", []byte("identical bytes"))
	store.SetObject("local_content/ab/cd/samesize", []byte("OTHER version!!"))
	store.SetObject("local_content/ab/cd/othersize", []byte("a longer, other version"))
	var out bytes.Buffer
	st, err := importTree(context.Background(), store, importOptions{from: src, concurrency: 2, deleteSource: true, progress: &out})
	if err == nil || !strings.Contains(err.Error(), "conflict") {
		t.Fatalf("import over conflicting keys: %v, want a conflict error\n%s", err, out.String())
	}
	for rel, want := range map[string]string{
		"local_content/ab/cd/samesize":  "OTHER version!!",
		"local_content/ab/cd/othersize": "a longer, other version",
		"local_content/ab/cd/new":       "only local",
	} {
		if got, _ := store.Object(rel); string(got) != want {
			t.Errorf("%s in the bucket: %q, want %q", rel, got, want)
		}
	}
	for rel, kept := range map[string]bool{
		"local_content/ab/cd/same":      false,
		"local_content/ab/cd/new":       false,
		"local_content/ab/cd/samesize":  true,
		"local_content/ab/cd/othersize": true,
	} {
		_, err := os.Stat(filepath.Join(src, rel))
		if kept != (err == nil) {
			t.Errorf("%s: kept %v, want %v", rel, err == nil, kept)
		}
	}
	if st.Conflicts != 2 || !strings.Contains(out.String(), "samesize") || !strings.Contains(out.String(), "othersize") {
		t.Errorf("conflicts %d, report:\n%s", st.Conflicts, out.String())
	}
}

// import never follows a symlink: not one in the tree at scan time (to a
// file or a directory outside it), nor a file swapped for one before its
// upload; --delete-source never deletes outside the tree.
func TestImportNeverFollowsSymlinks(t *testing.T) {
	outside := t.TempDir()
	writeTree(t, outside, map[string]string{"secret": "root-only", "dir/victim": "outside file"})
	src := t.TempDir()
	writeTree(t, src, map[string]string{"local_content/ab/cd/real": "media"})
	os.Symlink(filepath.Join(outside, "secret"), filepath.Join(src, "local_content/ab/cd/link"))
	os.Symlink(filepath.Join(outside, "dir"), filepath.Join(src, "local_content/linkdir"))
	store := objstore.NewMem()
	var out bytes.Buffer
	if _, err := importTree(context.Background(), store, importOptions{from: src, concurrency: 2, deleteSource: true, progress: &out}); err != nil {
		t.Fatalf("import: %v\n%s", err, out.String())
	}
	if keys := store.Keys(); len(keys) != 1 || keys[0] != "local_content/ab/cd/real" {
		t.Fatalf("uploaded %v, want only the regular file", keys)
	}
	if _, err := os.Stat(filepath.Join(outside, "dir/victim")); err != nil {
		t.Fatalf("a file outside the tree was deleted: %v", err)
	}
	if !strings.Contains(out.String(), "skipped 2") {
		t.Errorf("the report does not say what was skipped:\n%s", out.String())
	}

	// A file swapped for a symlink between the scan and the upload.
	src2 := t.TempDir()
	writeTree(t, src2, map[string]string{"m/f": "media bytes"})
	p := filepath.Join(src2, "m/f")
	root, err := os.OpenRoot(src2)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	os.Remove(p)
	os.Symlink(filepath.Join(outside, "secret"), p)
	err = uploadFile(context.Background(), store, root, localFile{rel: "m/f", size: int64(len("media bytes"))})
	if err == nil {
		t.Fatal("uploaded through a symlink swapped in after the scan")
	}
	if got, ok := store.Object("m/f"); ok {
		t.Fatalf("the symlink's target went to the bucket: %q", got)
	}
}
