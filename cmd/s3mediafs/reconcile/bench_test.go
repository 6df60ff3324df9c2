// Benchmark of reconcile over a million keys, in a child process.

package reconcile_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
	"github.com/s3mediafs/s3mediafs/cmd/s3mediafs/reconcile"
	"github.com/s3mediafs/s3mediafs/cmd/s3mediafs/reconcile/synapsetest"
)

// The million-media benchmark: a real SQLite database of N rows (60 %
// local media, 20 % their thumbnails, 20 % remote media) and a bucket
// listing of the same N objects plus 10 % orphans. The bucket is
// generated as it is listed, so that the figure is reconcile's own: the
// database read, three sorts on disk and the merge. Each run is a child
// process, so that its peak RSS is reconcile's alone. The baseline, in the
// same run, is a plain read of the same rows with nothing kept.
//
//	go test -run '^$' -bench ReconcileMillion -benchtime 1x ./cmd/s3mediafs/reconcile
//	S3MEDIAFS_RECONCILE_N=10000000 … for ten million.
func BenchmarkReconcileMillion(b *testing.B) {
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("S3MEDIAFS_RECONCILE_N")); err == nil && v > 0 {
		n = v
	}
	dbPath := filepath.Join(b.TempDir(), "homeserver.db")
	start := time.Now()
	seedMillion(b, dbPath, n)
	b.Logf("seeded %d rows in %s", n, time.Since(start).Round(time.Second))
	b.ResetTimer()
	for range b.N {
		base := child(b, "scan", dbPath, n)
		full := child(b, "reconcile", dbPath, n)
		b.ReportMetric(full.seconds, "s/reconcile")
		b.ReportMetric(full.seconds/base.seconds, "x-plain-scan")
		b.ReportMetric(full.rssMiB, "MiB-peak-RSS")
		b.ReportMetric(base.rssMiB, "MiB-peak-RSS-scan")
		b.Logf("reconcile of %d rows and %d objects: %.1f s, peak RSS %.0f MiB; plain scan %.1f s, %.0f MiB; orphans %d",
			n, n+n/10, full.seconds, full.rssMiB, base.seconds, base.rssMiB, full.orphans)
		if full.orphans != int64(n/10) {
			b.Fatalf("found %d orphans, want %d", full.orphans, n/10)
		}
	}
}

type childResult struct {
	seconds, rssMiB float64
	orphans         int64
}

func child(b *testing.B, mode, dbPath string, n int) childResult {
	cmd := exec.Command(os.Args[0], "-test.run=^TestReconcileChild$", "-test.v")
	cmd.Env = append(os.Environ(), "S3MEDIAFS_RECONCILE_CHILD="+mode, "S3MEDIAFS_RECONCILE_DB="+dbPath,
		"S3MEDIAFS_RECONCILE_N="+strconv.Itoa(n))
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("%s: %v\n%s", mode, err, out)
	}
	r := childResult{seconds: time.Since(start).Seconds(),
		rssMiB: float64(cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss) / 1024}
	var rep reconcile.Report
	for _, line := range splitLines(out) {
		if json.Unmarshal(line, &rep) == nil {
			r.orphans = rep.Orphans.Count
		}
	}
	return r
}

// TestReconcileChild is the benchmark's child process; it does nothing in
// an ordinary test run.
func TestReconcileChild(t *testing.T) {
	mode := os.Getenv("S3MEDIAFS_RECONCILE_CHILD")
	if mode == "" {
		t.Skip("the benchmark's child process")
	}
	n, _ := strconv.Atoi(os.Getenv("S3MEDIAFS_RECONCILE_N"))
	src, err := reconcile.Open(context.Background(), reconcile.Database{Engine: "sqlite3", Args: map[string]any{"database": os.Getenv("S3MEDIAFS_RECONCILE_DB")}})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if mode == "scan" {
		if _, err := src.Keys(context.Background(), func(string) error { return nil }); err != nil {
			t.Fatal(err)
		}
		return
	}
	rep, err := reconcile.Run(context.Background(), reconcile.Options{DB: src, Bucket: generatedBucket{n: n}, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	line, _ := json.Marshal(rep)
	fmt.Printf("\n%s\n", line)
}

func splitLines(b []byte) [][]byte {
	var lines [][]byte
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != '\n' {
			i++
		}
		lines = append(lines, b[:i])
		if i < len(b) {
			i++
		}
		b = b[i:]
	}
	return lines
}

func mediaID(i int) string { return fmt.Sprintf("%024d", i*7919%100_000_000_000) }

func seedMillion(b *testing.B, path string, n int) {
	db := synapsetest.SQLite(b, synapsetest.Current)
	db.SQL.Close()
	os.Rename(db.Args["database"].(string), path)
	conn, err := sql.Open("sqlite", path)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	tx, err := conn.Begin()
	if err != nil {
		b.Fatal(err)
	}
	local, _ := tx.Prepare("INSERT INTO local_media_repository (media_id, media_type, media_length, created_ts) VALUES (?, 'image/png', 10, 0)")
	thumb, _ := tx.Prepare("INSERT INTO local_media_repository_thumbnails (media_id, thumbnail_width, thumbnail_height, thumbnail_type, thumbnail_method) VALUES (?, 32, 32, 'image/png', 'crop')")
	remote, _ := tx.Prepare("INSERT INTO remote_media_cache (media_origin, media_id, filesystem_id, created_ts) VALUES ('matrix.org', ?, ?, 0)")
	for i := range n {
		var err error
		switch i % 5 {
		case 0, 1, 2:
			_, err = local.Exec(mediaID(i))
		case 3:
			_, err = thumb.Exec(mediaID(i - 1))
		case 4:
			_, err = remote.Exec(mediaID(i), mediaID(i))
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
}

// generatedBucket lists the objects of the seeded rows, and one orphan
// for every ten, generated on the fly in key-unrelated order.
type generatedBucket struct{ n int }

func (g generatedBucket) List(ctx context.Context, prefix string, recursive bool, fn func(objstore.Entry) bool) error {
	old := time.Now().Add(-48 * time.Hour)
	for i := range g.n {
		var key string
		switch i % 5 {
		case 0, 1, 2:
			key, _ = reconcile.LocalMedia(mediaID(i))
		case 3:
			key, _ = reconcile.LocalThumbnail(mediaID(i-1), 32, 32, "image/png", "crop")
		case 4:
			key, _ = reconcile.RemoteMedia("matrix.org", mediaID(i))
		}
		if !fn(objstore.Entry{Name: key, Size: 10, MTime: old}) {
			return nil
		}
		if i%10 == 0 {
			orphan, _ := reconcile.LocalMedia(fmt.Sprintf("orphan%018d", i))
			if !fn(objstore.Entry{Name: orphan, Size: 10, MTime: old}) {
				return nil
			}
		}
	}
	return nil
}

func (generatedBucket) Head(context.Context, string) (objstore.Object, error) {
	return objstore.Object{}, fmt.Errorf("not in the benchmark")
}

func (generatedBucket) DeleteMany(context.Context, []string) (map[string]error, error) {
	return nil, fmt.Errorf("not in the benchmark")
}
