// Every object is readable whatever the cache's size: one that cannot be
// kept is read from the store, and evicts nothing.

package cache

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

func TestObjectTheCacheCannotHoldIsReadable(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"larger than cache_max_size", Options{MaxSize: 32 << 20}},
		{"past the free-space floor", Options{MinFree: 1 << 60}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			store := objstore.NewMem()
			want := make([]byte, 48<<20)
			rand.NewChaCha8([32]byte{1}).Read(want)
			store.SetObject("media/big", want)
			small := []byte("a clean file that must stay cached")
			store.SetObject("media/small", small)

			o := tc.opts
			o.Dir, o.Store = t.TempDir(), store
			c, err := Open(o)
			if err != nil {
				t.Fatal(err)
			}
			c.Start()
			t.Cleanup(func() { c.Close() })
			for _, p := range []string{"media", "media/small", "media/big"} {
				if _, err := c.Stat(ctx, p); err != nil {
					t.Fatal(err)
				}
			}
			if tc.opts.MinFree == 0 {
				// A clean local file, which the big read must not evict.
				h, err := c.OpenFile(ctx, "media/small", os.O_RDONLY)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := h.ReadAt(ctx, make([]byte, 64), 0); err != nil {
					t.Fatal(err)
				}
				h.Release(ctx)
			}
			gets := store.Count("get")

			h, err := c.OpenFile(ctx, "media/big", os.O_RDONLY)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Release(ctx)
			local, err := h.MakeLocal(ctx)
			if err != nil || local {
				t.Fatalf("MakeLocal: local %v, %v; want a reader served from the store", local, err)
			}
			var got bytes.Buffer
			buf := make([]byte, 1<<20)
			for off := int64(0); ; {
				n, err := h.ReadAt(ctx, buf, off)
				if err != nil {
					t.Fatalf("read at %d: %v", off, err)
				}
				if n == 0 {
					break
				}
				got.Write(buf[:n])
				off += int64(n)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Fatalf("read %d bytes, not the object's %d", got.Len(), len(want))
			}
			if n := store.Count("get") - gets; n != 1 {
				t.Errorf("a sequential read of the object took %d GETs, want 1", n)
			}
			// A seek backwards costs one GET more, and reads the right bytes.
			n, err := h.ReadAt(ctx, buf[:100], 1000)
			if err != nil || n != 100 || !bytes.Equal(buf[:100], want[1000:1100]) {
				t.Fatalf("read after a seek: %d, %v", n, err)
			}
			if u := c.Usage(); u.LocalBytes > int64(len(small)) {
				t.Errorf("the cache holds %d bytes after the read; want at most the small file", u.LocalBytes)
			}
			if tc.opts.MinFree == 0 {
				r, _, _ := c.readRecord("media/small")
				if r.State != Clean {
					t.Errorf("the small file is %s after the big read: evicted for nothing", r.State)
				}
			}
		})
	}
}
