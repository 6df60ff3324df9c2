// Benchmark of import.

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/s3"
	"github.com/s3mediafs/s3mediafs/s3/s3test"
)

// BenchmarkImport compares `s3mediafs import` with the algorithm of the
// provider's `s3_media_upload upload` (one file at a time: HEAD, then PUT
// if missing), on the same files, the same server and the same SDK, in
// one run. Run through scripts/test.sh's server:
//
//	go test -run XXX -bench Import -benchtime 3x ./cmd/s3mediafs
func BenchmarkImport(b *testing.B) {
	src := b.TempDir()
	var total int64
	for i := range 400 {
		p := filepath.Join(src, fmt.Sprintf("local_content/%02x/%02x/m%04d", i%16, i%13, i))
		os.MkdirAll(filepath.Dir(p), 0o755)
		size := 20_000 + (i*7919)%180_000 // 20–200 kB, like Synapse's images
		os.WriteFile(p, bytes.Repeat([]byte{byte(i)}, size), 0o644)
		total += int64(size)
	}
	var importTime, providerTime time.Duration
	for range b.N {
		c, _, _ := s3test.Bucket(b, "")
		start := time.Now()
		if _, err := importTree(context.Background(), c, importOptions{from: src, concurrency: 8, progress: io.Discard}); err != nil {
			b.Fatal(err)
		}
		importTime += time.Since(start)

		c2, _, _ := s3test.Bucket(b, "")
		start = time.Now()
		if err := providerStyleUpload(c2, src); err != nil {
			b.Fatal(err)
		}
		providerTime += time.Since(start)
	}
	b.ReportMetric(float64(total)*float64(b.N)/importTime.Seconds()/1e6, "import_MB/s")
	b.ReportMetric(float64(total)*float64(b.N)/providerTime.Seconds()/1e6, "provider_style_MB/s")
	b.ReportMetric(providerTime.Seconds()/importTime.Seconds(), "speedup_x")
}

// providerStyleUpload is s3_media_upload's loop: for each file, HEAD the
// key and PUT the file if it is missing, one at a time.
func providerStyleUpload(c *s3.Client, src string) error {
	ctx := context.Background()
	return filepath.WalkDir(src, func(path string, d iofs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if _, err := c.Head(ctx, rel); err == nil {
			return nil
		} else if !errors.Is(err, iofs.ErrNotExist) {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		fi, _ := f.Stat()
		return c.Put(ctx, rel, f, fi.Size(), nil)
	})
}
