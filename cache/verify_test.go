// The store's bytes are checked before the cache keeps them: a body
// shorter, longer or other than the object (announced honestly or not)
// is fetched again, then EIO with nothing cached; a passing fetch keeps
// its CRC; the scrub drops a cached copy that no longer matches it.

package cache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"sync/atomic"
	"testing"

	"github.com/s3mediafs/s3mediafs/cache/index"
	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// liar is a store whose GETs lie in one way while lying is on.
type liar struct {
	objstore.Faulty
	lying atomic.Bool
	gets  atomic.Int32
}

func newLiar(mem *objstore.Mem, lie func(b *objstore.Body)) *liar {
	l := &liar{Faulty: objstore.Faulty{Store: mem}}
	l.lying.Store(true)
	l.Announce = func(_ string, b *objstore.Body) {
		l.gets.Add(1)
		if l.lying.Load() {
			lie(b)
		}
	}
	return l
}

// bodyOf replaces b's bytes with data, announced as announced bytes.
func bodyOf(b *objstore.Body, data []byte, announced int64) {
	b.ReadCloser.Close()
	b.ReadCloser, b.Len = io.NopCloser(bytes.NewReader(data)), announced
}

func TestTheStoresBytesAreCheckedBeforeTheCacheKeepsThem(t *testing.T) {
	data := bytes.Repeat([]byte("synapse media! "), 667)[:10_000]
	flipped := bytes.Clone(data)
	flipped[5000] ^= 1
	lies := map[string]func(b *objstore.Body){
		"half the body, announced as half": func(b *objstore.Body) { bodyOf(b, data[:5000], 5000) },
		"half the body, announced whole":   func(b *objstore.Body) { bodyOf(b, data[:5000], 10_000) },
		"a longer body, announced honestly": func(b *objstore.Body) {
			bodyOf(b, append(bytes.Clone(data), data...), 20_000)
			b.Size = 20_000
		},
		"a longer body, announced as the object": func(b *objstore.Body) { bodyOf(b, append(bytes.Clone(data), 'x'), 10_000) },
		"60 MiB for a 10,000-byte object":        func(b *objstore.Body) { bodyOf(b, make([]byte, 60<<20), 60<<20); b.Size = 60 << 20 },
		"one byte flipped, headers intact":       func(b *objstore.Body) { bodyOf(b, flipped, 10_000) },
		"one byte flipped, our CRC in the metadata, no ETag": func(b *objstore.Body) {
			bodyOf(b, flipped, 10_000)
			b.Sum = objstore.Sum{}
		},
	}
	for name, lie := range lies {
		t.Run(name, func(t *testing.T) {
			mem := objstore.NewMem()
			meta := map[string]string{}
			if name == "one byte flipped, our CRC in the metadata, no ETag" {
				h := objstore.NewCRC32C()
				h.Write(data)
				meta = metaOf(indexRecordWithCRC(h.Sum32()))
			}
			mem.SetObjectMeta("local_content/ab/cd/media", data, meta)
			store := newLiar(mem, lie)
			c, err := Open(Options{Dir: t.TempDir(), Store: store, MaxSize: 20 << 20})
			if err != nil {
				t.Fatal(err)
			}
			c.Start()
			t.Cleanup(func() { c.Close() })
			ctx := context.Background()
			h := openForReading(t, c, "local_content/ab/cd/media")
			buf := make([]byte, 20_000)
			if n, err := h.ReadAt(ctx, buf, 0); !errors.Is(err, ErrStore) {
				t.Fatalf("read through a lying store: %d bytes, %v; want EIO", n, err)
			}
			if n := store.gets.Load(); n < verifyTries {
				t.Errorf("%d GETs: a failed check is not fetched again", n)
			}
			if a, _ := c.Stat(ctx, "local_content/ab/cd/media"); a.State != Remote || a.Size != 10_000 {
				t.Fatalf("after a failed check: %s, %d bytes; want remote, 10000", a.State, a.Size)
			}
			if st := c.Status(); st.LocalBytes != 0 || st.CorruptDownloads < verifyTries {
				t.Fatalf("cache %d bytes, %d corrupt downloads counted", st.LocalBytes, st.CorruptDownloads)
			}
			// Honest again: the same mount reads the true bytes.
			store.lying.Store(false)
			n, err := h.ReadAt(ctx, buf, 0)
			if err != nil || !bytes.Equal(buf[:n], data) {
				t.Fatalf("read through the honest store: %d bytes, %v", n, err)
			}
		})
	}
}

// One bad answer among good ones costs a second GET, not an error.
func TestOneBadBodyIsFetchedAgain(t *testing.T) {
	mem := objstore.NewMem()
	data := bytes.Repeat([]byte{7}, 3000)
	mem.SetObject("x", data)
	var bad atomic.Bool
	bad.Store(true)
	store := &objstore.Faulty{Store: mem, Announce: func(_ string, b *objstore.Body) {
		if bad.Swap(false) {
			bodyOf(b, bytes.Repeat([]byte{8}, 3000), 3000)
		}
	}}
	c := openTest(t, t.TempDir(), store, nil)
	if got := readFile(t, c, "x"); !bytes.Equal(got, data) {
		t.Fatal("wrong bytes after one bad body")
	}
	if st := c.Status(); st.CorruptDownloads != 1 {
		t.Fatalf("%d corrupt downloads counted, want 1", st.CorruptDownloads)
	}
}

// Uploads carry the CRC-32C of their bytes as metadata, and the record
// keeps it; a fetched file keeps the CRC it was checked with.
func TestUploadsCarryTheirCRC(t *testing.T) {
	mem := objstore.NewMem()
	c := openTest(t, t.TempDir(), mem, nil)
	data := []byte("the bytes of a thumbnail")
	writeFile(t, c, "local_thumbnails/ab/cd/t", data)
	drainTest(t, c)
	h := objstore.NewCRC32C()
	h.Write(data)
	o, err := mem.Head(context.Background(), "local_thumbnails/ab/cd/t")
	if err != nil {
		t.Fatal(err)
	}
	if crc, ok := crcOfMeta(o.Meta); !ok || crc != h.Sum32() {
		t.Fatalf("object metadata %v, want crc32c %08x", o.Meta, h.Sum32())
	}
	r, ok, err := c.readRecord("local_thumbnails/ab/cd/t")
	if err != nil || !ok || !r.HasCRC || r.CRC32C != h.Sum32() {
		t.Fatalf("record %+v %v %v", r, ok, err)
	}
}

// The scrub finds a cached copy damaged on disk, drops it, and the next
// read fetches the object again.
func TestScrubDropsADamagedCopy(t *testing.T) {
	mem := objstore.NewMem()
	data := bytes.Repeat([]byte("abc"), 10_000)
	mem.SetObject("remote_content/example.org/ab/cd/m", data)
	dir := t.TempDir()
	c := openTest(t, dir, mem, nil)
	if got := readFile(t, c, "remote_content/example.org/ab/cd/m"); !bytes.Equal(got, data) {
		t.Fatal("first read")
	}
	eventually(t, func() bool {
		a, _ := c.Stat(context.Background(), "remote_content/example.org/ab/cd/m")
		return a.State == Clean
	})
	r, ok, err := c.readRecord("remote_content/example.org/ab/cd/m")
	if err != nil || !ok || r.State != Clean || !r.HasCRC {
		t.Fatalf("after the fetch: %+v %v", r, err)
	}
	f, err := os.OpenFile(c.data.Path(r.Data), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("X"), 100)
	f.Close()
	c.Close()
	c, err = Open(Options{Dir: dir, Store: mem, ScrubRate: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.Start()
	eventually(t, func() bool { return c.Status().ScrubCorrupt == 1 })
	if a, _ := c.Stat(context.Background(), "remote_content/example.org/ab/cd/m"); a.State != Remote {
		t.Fatalf("a damaged copy is still %s", a.State)
	}
	if got := readFile(t, c, "remote_content/example.org/ab/cd/m"); !bytes.Equal(got, data) {
		t.Fatal("the read after the scrub did not fetch the true bytes")
	}
	if st := c.Status(); st.ScrubChecked == 0 {
		t.Fatal("nothing counted as checked")
	}
}

// indexRecordWithCRC is a record whose upload carries crc.
func indexRecordWithCRC(crc uint32) index.Record {
	return index.Record{CRC32C: crc, HasCRC: true}
}

// BenchmarkVerify is the CPU a download's check costs: the CRC-32C alone
// (an object a mount wrote) and with the MD5 of an ETag (another tool's).
func BenchmarkVerify(b *testing.B) {
	chunk := bytes.Repeat([]byte("media bytes "), 1<<16/12+1)[:1<<16]
	for name, sum := range map[string]objstore.Sum{
		"crc32c":     objstore.CRC32CSum(0),
		"crc32c+md5": {Algo: objstore.MD5, Value: make([]byte, 16)},
	} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(chunk)))
			v := newVerifier(objstore.Object{Sum: sum})
			for b.Loop() {
				v.Write(chunk)
			}
		})
	}
}
