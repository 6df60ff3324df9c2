// What lookups of missing names remember is bounded, whatever names a
// local user invents.

package cache

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

func TestInventedNamesDoNotGrowMemory(t *testing.T) {
	ctx := context.Background()
	n := 1_000_000
	if raceEnabled {
		n = 100_000
	}
	store := objstore.NewMem()
	store.SetObject("media/known", []byte("x"))
	c := openTest(t, t.TempDir(), store, nil)
	if _, err := c.Stat(ctx, "media"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Readdir(ctx, "media"); err != nil { // a directory just listed
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range n {
		dir := "media" // answered from the listing
		if i%2 == 1 {
			dir = "elsewhere" // asks the store once, remembered absent
		}
		p := fmt.Sprintf("%s/%016x", dir, rnd.Uint64())
		if _, err := c.Stat(ctx, p); !errors.Is(err, ErrNotExist) {
			t.Fatalf("stat of an invented name: %v", err)
		}
		if i == 0 {
			if _, err := c.Stat(ctx, "elsewhere"); !errors.Is(err, ErrNotExist) {
				t.Fatal(err)
			}
		}
	}
	c.mu.Lock()
	neg, listed := c.negative.Len(), c.listed.Len()
	c.mu.Unlock()
	t.Logf("after %d lookups of invented names: %d negative entries, %d listed entries", n, neg, listed)
	if neg > maxRecentNames || listed > maxRecentNames {
		t.Fatalf("remembered %d absent names and %d listed ones, over the bound %d", neg, listed, maxRecentNames)
	}
	// What matters is still remembered: a directory listed now answers
	// without the store.
	if _, err := c.Readdir(ctx, "media"); err != nil {
		t.Fatal(err)
	}
	lists := store.Count("list")
	if _, err := c.Stat(ctx, "media/another"); !errors.Is(err, ErrNotExist) || store.Count("list") != lists {
		t.Fatalf("the listed directory asked the store: %v", err)
	}
}
