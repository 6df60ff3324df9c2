package s3_test

import (
	"bytes"
	"context"
	"sort"
	"strings"
	"testing"
	"time"
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
		if err := client.Put(ctx, key, bytes.NewReader([]byte("x")), 1); err != nil {
			t.Fatal(err)
		}
	}
	top := func() string {
		t.Helper()
		var names []string
		if err := client.List(ctx, "", false, func(name string, _ int64, _ time.Time, dir bool) bool {
			if dir {
				name += "/"
			}
			names = append(names, name)
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
	if _, _, err := client.Head(ctx, "full/a/x"); err != nil {
		t.Errorf("an object below a deleted folder key: %v", err)
	}
}
