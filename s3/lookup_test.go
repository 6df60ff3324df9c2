package s3_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/s3mediafs/s3mediafs/s3"
)

// Lookup tells a file, a directory and neither apart in one LIST,
// and still finds the directory when a page of longer names sorts first.
func TestLookupInOneRequest(t *testing.T) {
	client, proxy := viaProxy(t, nil)
	ctx := context.Background()
	put := func(key string, n int) {
		t.Helper()
		if err := client.Put(ctx, key, bytes.NewReader(make([]byte, n)), int64(n)); err != nil {
			t.Fatal(err)
		}
	}
	put("d/file", 7)
	put("d/dir/x", 1)
	put("d/fileish-longer", 1) // shares the prefix, sorts before "d/file/"
	for i := range 101 {       // more than a page of names between "crowded" and "crowded/"
		put(fmt.Sprintf("d/crowded-%03d", i), 1)
	}
	put("d/crowded/z", 1)

	cases := []struct {
		key       string
		file, dir bool
		size      int64
		requests  int
	}{
		{"d/file", true, false, 7, 1},
		{"d/dir", false, true, 0, 1},
		{"d/none", false, false, 0, 1},
		{"d/crowded", false, true, 0, 3}, // the page ran out: a HEAD and a LIST more
	}
	for _, c := range cases {
		proxy.Reset()
		size, _, file, dir, err := client.Lookup(ctx, c.key)
		if err != nil {
			t.Fatalf("%s: %v", c.key, err)
		}
		if file != c.file || dir != c.dir || size != c.size {
			t.Errorf("%s: file=%v dir=%v size=%d, want file=%v dir=%v size=%d", c.key, file, dir, size, c.file, c.dir, c.size)
		}
		if n := len(proxy.Requests()); n != c.requests {
			t.Errorf("%s: %d requests, want %d", c.key, n, c.requests)
		}
	}
}

var _ s3.Store = (*s3.Client)(nil)
