package s3_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// TestDeleteObjectsNotImplemented: a store (or a gateway in front of one)
// that answers DeleteObjects with 501 or 405 is reported as having none,
// so that the cache sends one DELETE a key from then on; any other
// failure of the request is an ordinary error, retried as such.
func TestDeleteObjectsNotImplemented(t *testing.T) {
	c, proxy := viaProxy(t, nil)
	if err := c.Put(context.Background(), "gone/a", strings.NewReader("a"), 1, nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		status      int
		unsupported bool
	}{{http.StatusNotImplemented, true}, {http.StatusMethodNotAllowed, true}, {http.StatusForbidden, false}} {
		proxy.SetFail(func(r *http.Request) int {
			if q, _ := url.ParseQuery(r.URL.RawQuery); r.Method == http.MethodPost && q.Has("delete") {
				return tc.status
			}
			return 0
		})
		_, err := c.DeleteMany(context.Background(), []string{"gone/a"})
		if err == nil {
			t.Fatalf("%d: no error", tc.status)
		}
		if got := errors.Is(err, errors.ErrUnsupported); got != tc.unsupported {
			t.Errorf("%d: unsupported %v (%v), want %v", tc.status, got, err, tc.unsupported)
		}
	}
	proxy.SetFail(nil)
	if failed, err := c.DeleteMany(context.Background(), []string{"gone/a"}); err != nil || len(failed) > 0 {
		t.Fatalf("after the store healed: %v, %v", err, failed)
	}
	if _, err := c.Head(context.Background(), "gone/a"); !objstore.IsNotExist(err) {
		t.Errorf("still there after DeleteObjects: %v", err)
	}
}
