// Lookup answers in one request.

package s3_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
	"github.com/s3mediafs/s3mediafs/s3"
)

// Lookup tells a file, a directory and neither apart in one LIST, hands
// over what lies below a directory, and still finds the directory when a
// page of longer names sorts first.
func TestLookupInOneRequest(t *testing.T) {
	client, proxy := viaProxy(t, nil)
	ctx := context.Background()
	put := func(key string, n int) {
		t.Helper()
		if err := client.Put(ctx, key, bytes.NewReader(make([]byte, n)), int64(n), nil); err != nil {
			t.Fatal(err)
		}
	}
	put("d/file", 7)
	put("d/dir/x", 1)
	put("d/dir/sub/y", 2)
	put("d/dirz", 1)           // sorts after everything under d/dir/
	put("d/fileish-longer", 1) // shares the prefix, sorts before "d/file/"
	for i := range 5 {         // more than a page of names between "crowded" and "crowded/"
		put(fmt.Sprintf("d/crowded-%03d", i), 1)
	}
	put("d/crowded/z", 1)
	defer s3.SetLookupPage(4)()

	cases := []struct {
		key       string
		file, dir bool
		size      int64
		below     string
		complete  bool
		requests  int
	}{
		{"d/file", true, false, 7, "", true, 1},
		{"d/dir", false, true, 0, "sub/y=2 x=1", true, 1},
		{"d/none", false, false, 0, "", true, 1},
		{"d/crowded", false, true, 0, "", false, 3}, // the page ran out: a HEAD and a LIST more
	}
	for _, c := range cases {
		proxy.Reset()
		var below []string
		f, err := client.Lookup(ctx, c.key, func(e objstore.Entry) {
			below = append(below, fmt.Sprintf("%s=%d", e.Name, e.Size))
		})
		size, file, dir, complete := f.Size, f.File, f.Dir, f.Complete
		if err != nil {
			t.Fatalf("%s: %v", c.key, err)
		}
		if file != c.file || dir != c.dir || size != c.size || complete != c.complete {
			t.Errorf("%s: file=%v dir=%v size=%d complete=%v, want file=%v dir=%v size=%d complete=%v",
				c.key, file, dir, size, complete, c.file, c.dir, c.size, c.complete)
		}
		if got := strings.Join(below, " "); got != c.below {
			t.Errorf("%s: below %q, want %q", c.key, got, c.below)
		}
		if n := len(proxy.Requests()); n != c.requests {
			t.Errorf("%s: %d requests, want %d", c.key, n, c.requests)
		}
	}
}

var _ objstore.Store = (*s3.Client)(nil)
