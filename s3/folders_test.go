// Folder markers: deletes remove only empty ones; listings order files
// before prefixes and return odd keys exactly.

package s3_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// Stores differ in what they list after deletes: SeaweedFS keeps a
// directory's empty folder and lists it as a common prefix, as if files
// were below it. The mount depends on two things every store here does:
// a DELETE of the folder key "dir/" removes such an empty folder, and it
// never removes objects below it.
func TestFolderDeleteRemovesOnlyEmptyFolders(t *testing.T) {
	client, _ := viaProxy(t, nil)
	ctx := context.Background()
	put := func(key string) {
		t.Helper()
		if err := client.Put(ctx, key, bytes.NewReader([]byte("x")), 1, nil); err != nil {
			t.Fatal(err)
		}
	}
	top := func() string {
		t.Helper()
		var names []string
		if err := client.List(ctx, "", false, func(e objstore.Entry) bool {
			if e.Dir {
				e.Name += "/"
			}
			names = append(names, e.Name)
			return true
		}); err != nil {
			t.Fatal(err)
		}
		sort.Strings(names)
		return strings.Join(names, " ")
	}
	put("full/a/x")
	put("emptied/y")
	if err := client.Delete(ctx, "emptied/y"); err != nil {
		t.Fatal(err)
	}
	t.Logf("after deleting emptied/y the store lists: %s", top())

	for _, folder := range []string{"full/", "full/a/", "emptied/"} {
		if err := client.Delete(ctx, folder); err != nil {
			t.Errorf("delete %s: %v", folder, err)
		}
	}
	if got := top(); got != "full/" {
		t.Errorf("after deleting the folder keys the store lists %q, want %q", got, "full/")
	}
	if _, err := client.Head(ctx, "full/a/x"); err != nil {
		t.Errorf("an object below a deleted folder key: %v", err)
	}

	// DeleteObjects answers as DELETE does, key by key.
	put("batch/b/x")
	put("batch-emptied/y")
	if err := client.Delete(ctx, "batch-emptied/y"); err != nil {
		t.Fatal(err)
	}
	failed, err := client.DeleteMany(ctx, []string{"batch/", "batch/b/", "batch-emptied/"})
	if err != nil || len(failed) != 0 {
		t.Errorf("batched delete of folder keys: %v, failed %v", err, failed)
	}
	if _, err := client.Head(ctx, "batch/b/x"); err != nil {
		t.Errorf("an object below a batch-deleted folder key: %v", err)
	}
}

// A name that is both an object and a prefix ("a" and "a/b") is listed as
// the object first, as the store sorts keys, whatever the page holds.
func TestListOrdersFileBeforeItsPrefix(t *testing.T) {
	client, _ := viaProxy(t, nil)
	ctx := context.Background()
	for _, k := range []string{"d/a", "d/a/b", "d/a-", "d/a0"} {
		err := client.Put(ctx, k, bytes.NewReader([]byte("x")), 1, nil)
		if strings.Contains(fmt.Sprint(err), "ObjectParentIsFile") {
			t.Skipf("this store cannot hold both (versitygw's posix backend): %v", err)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	if err := client.List(ctx, "d/", false, func(e objstore.Entry) bool {
		if e.Dir {
			e.Name += "/"
		}
		got = append(got, e.Name)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if want := "a a- a/ a0"; strings.Join(got, " ") != want {
		t.Errorf("listed %q, want %q", strings.Join(got, " "), want)
	}
}

// Keys with characters XML cannot carry, and ones that look encoded,
// come back from LIST exactly as stored (the LIST asks for URL encoding
// and decodes it).
func TestListReturnsOddKeysExactly(t *testing.T) {
	client, _ := viaProxy(t, nil)
	ctx := context.Background()
	keys := []string{"d/a b", "d/a+b", "d/%41", "d/ü", "d/ctl\x01char", "d/amp&lt;"}
	var stored []string
	for _, k := range keys {
		if err := client.Put(ctx, k, bytes.NewReader([]byte("x")), 1, nil); err != nil {
			t.Logf("the store refuses %q: %v", k, err)
			continue
		}
		stored = append(stored, strings.TrimPrefix(k, "d/"))
	}
	var got []string
	if err := client.List(ctx, "d/", false, func(e objstore.Entry) bool {
		got = append(got, e.Name)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if os.Getenv("S3MEDIAFS_TEST_STORE") == "versitygw" {
		// versitygw ignores encoding-type=url: a control character does
		// not survive its XML, so that key cannot be found by listing.
		stored = slices.DeleteFunc(stored, func(k string) bool { return strings.ContainsRune(k, 1) })
		got = slices.DeleteFunc(got, func(k string) bool { return strings.HasPrefix(k, "ctl") })
	}
	sort.Strings(stored)
	sort.Strings(got)
	if strings.Join(got, "|") != strings.Join(stored, "|") {
		t.Errorf("listed %q, stored %q", got, stored)
	}
	for _, k := range stored {
		f, err := client.Lookup(ctx, "d/"+k, nil)
		if err != nil || !f.File {
			t.Errorf("lookup of %q: file %v, %v", k, f.File, err)
		}
	}
}
