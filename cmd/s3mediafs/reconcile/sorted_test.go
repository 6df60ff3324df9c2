// The external sort of keys.

package reconcile

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
)

// Keys come back sorted and once each, whether they fit in one run or are
// spilled over many, and the runs' files go away.
func TestSortedKeys(t *testing.T) {
	for _, runKeys := range []int{7, 1000, 100000} {
		dir := t.TempDir()
		s := newSortedKeys(dir, runKeys)
		rng := rand.New(rand.NewPCG(1, uint64(runKeys)))
		var want []string
		for i := 0; i < 5000; i++ {
			k := fmt.Sprintf("local_content/%02x/%02x/%d", rng.IntN(256), rng.IntN(256), rng.IntN(3000))
			want = append(want, k)
			if err := s.Add(k); err != nil {
				t.Fatal(err)
			}
		}
		slices.Sort(want)
		want = slices.Compact(want)
		it, err := s.Sorted()
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for k, ok := it.Next(); ok; k, ok = it.Next() {
			got = append(got, k)
		}
		if it.Err() != nil {
			t.Fatal(it.Err())
		}
		it.Close()
		s.Remove()
		if !slices.Equal(got, want) {
			t.Fatalf("runKeys %d: %d keys back, want %d", runKeys, len(got), len(want))
		}
		if left, _ := os.ReadDir(dir); len(left) != 0 {
			t.Fatalf("runKeys %d: %d run files left", runKeys, len(left))
		}
	}
}
