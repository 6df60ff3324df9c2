// Names looked up in a directory made here cost the store no request.

package cache

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// Synapse makes a media directory, then creates the file in it: names the
// index lacks in a directory made here are absent without a LIST for
// MadeDirTrust, well past NegativeTTL; another host's file there is found
// once it has passed. With no MadeDirTrust, NegativeTTL alone applies.
func TestNamesInADirectoryMadeHereAskNothing(t *testing.T) {
	for _, trust := range []time.Duration{300 * time.Millisecond, 0} {
		mem := objstore.NewMem()
		c := openWith(t, Options{Store: mem, NegativeTTL: 10 * time.Millisecond, MadeDirTrust: trust})
		ctx := context.Background()
		if _, err := c.Stat(ctx, "xx"); !errors.Is(err, ErrNotExist) {
			t.Fatal(err)
		}
		if _, err := c.Mkdir(ctx, "xx", NewFile{Mode: 0o755}); err != nil {
			t.Fatal(err)
		}
		mem.SetObject("xx/theirs", []byte("another host's"))
		time.Sleep(50 * time.Millisecond) // past NegativeTTL
		lists := mem.Count("list") + mem.Count("head")
		_, err := c.Stat(ctx, "xx/theirs")
		asked := mem.Count("list") + mem.Count("head") - lists
		switch {
		case trust > 0 && (!errors.Is(err, ErrNotExist) || asked != 0):
			t.Fatalf("trusted: %v after %d requests, want absent after none", err, asked)
		case trust == 0 && (err != nil || asked == 0):
			t.Fatalf("untrusted: %v after %d requests, want found by asking", err, asked)
		}
		if trust == 0 {
			continue
		}
		time.Sleep(trust)
		if _, err := c.Stat(ctx, "xx/theirs"); err != nil {
			t.Fatalf("another host's file once the trust passed: %v", err)
		}
	}
}
