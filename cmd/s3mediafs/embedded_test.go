// The embedded store copies an object that grows while it is read.

package main

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/s3mediafs/s3mediafs/s3/s3test"
)

// The embedded store serves copies (chmod, chown, renames) and reads while
// writes grow its file: bolt remaps it then, and nothing may still point
// into the old map (a CopyObject faulted the whole daemon on pjdfstest's
// chmod suite).
func TestEmbeddedStoreCopiesWhileItGrows(t *testing.T) {
	ctx := context.Background()
	client := embeddedClient(t)
	put := func(key string, data []byte) {
		if err := client.Put(ctx, key, bytes.NewReader(data), int64(len(data)), map[string]string{"uid": "1"}); err != nil {
			t.Error(err)
		}
	}
	put("seed", []byte("seed"))
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				key := fmt.Sprintf("k%d-%d", w, i)
				put(key, bytes.Repeat([]byte{byte(i)}, 64<<10*(i+1))) // grows the file
				if err := client.Copy(ctx, key, key, map[string]string{"mode": "33188"}); err != nil {
					t.Error(err)
				}
				if err := client.Copy(ctx, "seed", key+"-copy", map[string]string{"uid": "2"}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	for w := range 4 {
		key := fmt.Sprintf("k%d-%d", w, 24)
		got, ok := s3test.Object(t, client, key)
		if !ok || !bytes.Equal(got, bytes.Repeat([]byte{24}, 64<<10*25)) {
			t.Errorf("%s after copies onto itself: %d bytes", key, len(got))
		}
		if o, err := client.Head(ctx, key); err != nil || o.Meta["mode"] != "33188" {
			t.Errorf("%s metadata after a copy: %v %v", key, o.Meta, err)
		}
	}
}
