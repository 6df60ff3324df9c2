// Benchmarks of eviction and of opening a cache over a million entries.

package cache

import (
	"context"
	"encoding/binary"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/index"
	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// fillIndex writes n clean file records (with their LRU entries) straight
// into the index, as a cache that has seen n media files would hold.
func fillIndex(b *testing.B, c *Cache, n int) {
	b.Helper()
	wb := c.ix.Badger().NewWriteBatch()
	defer wb.Cancel()
	const size = 100_000
	for i := range n {
		p := fmt.Sprintf("local_content/%02x/%02x/media%07d", i%251, i%241, i)
		r := index.Record{State: Clean, Ino: uint64(i + 2), Size: size, Gen: 1, InStore: true,
			Data: fmt.Sprintf("%032x", i), MTime: time.Now().UnixNano()}
		if err := wb.Set(index.EntryKey(p), r.Encode()); err != nil {
			b.Fatal(err)
		}
		at := int64(i) // older first
		if err := wb.Set(index.LRUKey(at, p), nil); err != nil {
			b.Fatal(err)
		}
		if err := wb.Set(index.AccessKey(p), binary.BigEndian.AppendUint64(nil, uint64(at))); err != nil {
			b.Fatal(err)
		}
	}
	// Their directories, so that paths resolve through a mount.
	dirs := map[string]bool{}
	for i := range n {
		for _, d := range []string{"local_content", fmt.Sprintf("local_content/%02x", i%251), fmt.Sprintf("local_content/%02x/%02x", i%251, i%241)} {
			if dirs[d] {
				continue
			}
			dirs[d] = true
			r := index.Record{Dir: true, Ino: uint64(n + 2 + len(dirs)), MTime: time.Now().UnixNano()}
			if err := wb.Set(index.EntryKey(d), r.Encode()); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := wb.Set(index.AcctKey, index.Acct{Used: int64(n) * size}.Encode()); err != nil {
		b.Fatal(err)
	}
	if err := wb.Flush(); err != nil {
		b.Fatal(err)
	}
	c.used = int64(n) * size
}

// millionEntryCache opens a cache holding 1,000,000 clean files, closed
// when the benchmark ends.
func millionEntryCache(b *testing.B) *Cache {
	b.Helper()
	c, err := Open(Options{Dir: b.TempDir(), Store: objstore.NewMem()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	fillIndex(b, c, 1_000_000)
	return c
}

// BenchmarkEvictMillionEntries measures one eviction (LRU lookup, index
// transaction, data file removal) in a cache whose index holds 1,000,000
// files. Run: go test -bench EvictMillion -benchtime 20000x ./cache
func BenchmarkEvictMillionEntries(b *testing.B) {
	c := millionEntryCache(b)
	b.ResetTimer()
	evicted := 0
	var from []byte
	for evicted < b.N {
		cands, next, err := c.lruBatch(from, 64)
		if err != nil || len(cands) == 0 {
			b.Fatalf("LRU exhausted after %d: %v", evicted, err)
		}
		from = next
		for _, cand := range cands {
			if evicted == b.N {
				break
			}
			if !c.evictOne(cand.Path) {
				b.Fatalf("could not evict %s", cand.Path)
			}
			evicted++
		}
	}
	b.StopTimer()
	if u := c.Usage(); u.LocalBytes != int64(1_000_000-b.N)*100_000 {
		b.Fatalf("accounting after evictions: %d", u.LocalBytes)
	}
}

// BenchmarkEvictPassMillionEntries measures a full eviction pass that
// frees 1,000 files from a 1,000,000-file cache over its limit.
func BenchmarkEvictPassMillionEntries(b *testing.B) {
	c := millionEntryCache(b)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		c.mu.Lock()
		c.opts.MaxSize = int64(float64(c.used-1000*100_000) / lowWater)
		c.mu.Unlock()
		b.StartTimer()
		c.evict(context.Background())
	}
}

// BenchmarkOpenMillionEntries measures what a restart costs with
// 1,000,000 files in the index: Open and Start (the mount serves right
// after Open), and the Go heap in use once open. Nothing walks the index
// or the cache directory at start, so neither grows with the entries.
func BenchmarkOpenMillionEntries(b *testing.B) {
	dir := b.TempDir()
	c, err := Open(Options{Dir: dir, Store: objstore.NewMem()})
	if err != nil {
		b.Fatal(err)
	}
	fillIndex(b, c, 1_000_000)
	c.Close()
	b.ResetTimer()
	var heap uint64
	for range b.N {
		c, err := Open(Options{Dir: dir, Store: objstore.NewMem()})
		if err != nil {
			b.Fatal(err)
		}
		c.Start()
		b.StopTimer()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		heap = ms.HeapInuse
		if _, err := c.Stat(context.Background(), "local_content/00/00/media0000000"); err != nil {
			b.Fatal(err)
		}
		c.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(heap)/(1<<20), "heap_MiB")
}
