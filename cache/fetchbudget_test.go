// Cold reads cannot make the cache evict more than the fetches in flight,
// which are bounded by count and bytes, need.

package cache

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

func TestConcurrentColdReadsEvictLittle(t *testing.T) {
	ctx := context.Background()
	const size = 4 << 20
	store := objstore.NewMem()
	for i := range 12 {
		store.SetObject(fmt.Sprintf("hot/%02d", i), bytes.Repeat([]byte{byte(i)}, size))
	}
	for i := range 10 {
		store.SetObject(fmt.Sprintf("cold/%02d", i), bytes.Repeat([]byte{byte(100 + i)}, size))
	}
	// Every cold GET waits until all ten reads have asked for their object,
	// so that no fetch ends (and frees its share of the budget for a later
	// reader) before each reader has chosen between fetching and streaming.
	// Without the gate a slow machine starts a reader late, after a fetch
	// has ended, and the test measures scheduling rather than the bound.
	var (
		gateMu   sync.Mutex
		asked    = map[string]bool{}
		allAsked = make(chan struct{})
	)
	faulty := &objstore.Faulty{Store: store, BeforeGet: func(ctx context.Context, key string) error {
		if !strings.Contains(key, "cold/") {
			return nil
		}
		gateMu.Lock()
		if !asked[key] {
			asked[key] = true
			if len(asked) == 10 {
				close(allAsked)
			}
		}
		gateMu.Unlock()
		select {
		case <-allAsked:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}}
	c, err := Open(Options{Dir: t.TempDir(), Store: faulty, MaxSize: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	t.Cleanup(func() { c.Close() })
	read := func(p string) []byte {
		h, err := c.OpenFile(ctx, p, os.O_RDONLY)
		if err != nil {
			t.Error(err)
			return nil
		}
		defer h.Release(ctx)
		var out bytes.Buffer
		buf := make([]byte, 1<<20)
		for off := int64(0); ; {
			n, err := h.ReadAt(ctx, buf, off)
			if err != nil {
				t.Error(err)
				return nil
			}
			if n == 0 {
				return out.Bytes()
			}
			out.Write(buf[:n])
			off += int64(n)
		}
	}
	for _, d := range []string{"hot", "cold"} {
		if _, err := c.Stat(ctx, d); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Readdir(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 12 { // 48 MiB of clean, cached files
		read(fmt.Sprintf("hot/%02d", i))
	}
	before := c.stats.evictions.Load()
	var wg sync.WaitGroup
	for i := range 10 { // 40 MiB of cold reads at once
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got := read(fmt.Sprintf("cold/%02d", i)); !bytes.Equal(got, bytes.Repeat([]byte{byte(100 + i)}, size)) {
				t.Errorf("cold/%02d read wrong (%d bytes)", i, len(got))
			}
		}()
	}
	wg.Wait()
	evicted := c.stats.evictions.Load() - before
	t.Logf("10 concurrent cold reads of 4 MiB evicted %d cached files", evicted)
	if evicted > 4 {
		t.Errorf("10 concurrent cold reads evicted %d of 12 cached files; the fetches in flight need at most 4", evicted)
	}
}
