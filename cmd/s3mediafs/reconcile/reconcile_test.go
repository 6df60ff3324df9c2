// reconcile on a real PostgreSQL: report then delete, an old schema, a
// database that is not Synapse's, and hostile keys in the bucket.

package reconcile_test

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
	"github.com/s3mediafs/s3mediafs/cmd/s3mediafs/reconcile"
	"github.com/s3mediafs/s3mediafs/cmd/s3mediafs/reconcile/synapsetest"
)

var old = time.Now().Add(-72 * time.Hour)

// seed fills a database and a bucket as synapse-s3-storage-provider
// leaves them: media Synapse knows in both, purged media still in S3.
func seed(t *testing.T, db *synapsetest.DB, bucket *objstore.Mem) {
	db.Local("abcdefghijklmnopqrstuvwx", "")
	db.LocalThumbnail("abcdefghijklmnopqrstuvwx", 32, 32, "image/png", "crop")
	db.Local("2024-01-31_PreviewXYZ", "https://example.org/")
	db.LocalThumbnail("2024-01-31_PreviewXYZ", 64, 48, "image/jpeg", "scale")
	db.Remote("matrix.org", "remoteMediaID", "FsIdOfRemote01")
	db.RemoteThumbnail("matrix.org", "remoteMediaID", "FsIdOfRemote01", 96, 96, "image/webp", "scale")
	db.Local("missingEverywhere000000", "") // a row whose file is nowhere
	db.Pending("pendingUpload0000000000")   // an upload not arrived yet
	for _, k := range []string{
		"local_content/ab/cd/efghijklmnopqrstuvwx",
		"local_thumbnails/ab/cd/efghijklmnopqrstuvwx/32-32-image-png-crop",
		"url_cache/2024-01-31/PreviewXYZ",
		"url_cache_thumbnails/2024-01-31/PreviewXYZ/64-48-image-jpeg-scale",
		"remote_content/matrix.org/Fs/Id/OfRemote01",
		"remote_thumbnail/matrix.org/Fs/Id/OfRemote01/96-96-image-webp-scale",
		// purged by Synapse, left by the provider: orphans
		"local_content/pu/rg/edLocalMedia0000000000",
		"local_thumbnails/pu/rg/edLocalMedia0000000000/32-32-image-png-crop",
		"remote_content/matrix.org/Pu/rg/edRemote",
		"remote_thumbnail/matrix.org/Pu/rg/edRemote/32-32-image-png-crop",
		// not Synapse's
		"backups/2024.tar",
	} {
		bucket.SetObjectTime(k, []byte("0123456789"), old)
	}
	// Written a minute ago, row not yet committed: in the grace period.
	bucket.SetObjectTime("local_content/ne/wU/ploadInProgress", []byte("new"), time.Now().Add(-time.Minute))
}

func each(t *testing.T, fn func(t *testing.T, db *synapsetest.DB)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, synapsetest.SQLite(t, synapsetest.Current)) })
	t.Run("postgres", func(t *testing.T) { fn(t, synapsetest.Postgres(t, synapsetest.Current)) })
}

func open(t *testing.T, db *synapsetest.DB) *reconcile.Source {
	t.Helper()
	src, err := reconcile.Open(context.Background(), reconcile.Database{Engine: db.Engine, Args: db.Args})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

func TestReportThenDelete(t *testing.T) {
	each(t, func(t *testing.T, db *synapsetest.DB) {
		bucket := objstore.NewMem()
		seed(t, db, bucket)
		src := open(t, db)
		local := func(fn func(string, int64) error) error {
			return fn("local_content/lo/ca/lOnlyNotUploadedYet", 7)
		}
		db.Local("localOnlyNotUploadedYet", "")
		opts := reconcile.Options{DB: src, Bucket: bucket, Local: local, TempDir: t.TempDir(), MinAge: 24 * time.Hour, RunKeys: 3}
		rep, err := reconcile.Run(context.Background(), opts)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Orphans.Count != 4 || rep.Orphans.Bytes != 40 || rep.OrphansByTree["remote_thumbnail"].Count != 1 {
			t.Errorf("orphans %+v by tree %+v", rep.Orphans, rep.OrphansByTree)
		}
		if rep.Matched.Count != 6 || rep.InGrace.Count != 1 || rep.Foreign.Count != 1 || rep.LocalOnly.Count != 1 {
			t.Errorf("matched %d, in grace %d, foreign %d, local only %d", rep.Matched.Count, rep.InGrace.Count, rep.Foreign.Count, rep.LocalOnly.Count)
		}
		if rep.Missing.Count != 1 || rep.MissingKeys[0] != "local_content/mi/ss/ingEverywhere000000" {
			t.Errorf("missing %+v %q", rep.Missing, rep.MissingKeys)
		}
		if rep.Rows.Pending != 1 || rep.Rows.URLCache != 1 || rep.Rows.Unmappable != 0 {
			t.Errorf("rows %+v", rep.Rows)
		}
		if !rep.DryRun || rep.Deleted.Count != 0 || len(bucket.Keys()) != 12 {
			t.Fatalf("a dry run deleted: %+v, %d objects left", rep.Deleted, len(bucket.Keys()))
		}

		// The database gains a row for one orphan between the report and
		// the delete: that object stays.
		logPath := filepath.Join(t.TempDir(), "deleted.tsv")
		logFile, _ := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		defer logFile.Close()
		opts.Delete, opts.DeletedLog = true, logFile
		opts.Bucket = &gainOnDelete{Mem: bucket, db: db}
		rep, err = reconcile.Run(context.Background(), opts)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Deleted.Count != 3 || rep.KeptOwned != 1 {
			t.Errorf("deleted %+v, kept for a new row %d", rep.Deleted, rep.KeptOwned)
		}
		want := []string{
			"backups/2024.tar",
			"local_content/ab/cd/efghijklmnopqrstuvwx",
			"local_content/ne/wU/ploadInProgress",
			"local_thumbnails/ab/cd/efghijklmnopqrstuvwx/32-32-image-png-crop",
			"local_thumbnails/pu/rg/edLocalMedia0000000000/32-32-image-png-crop", // gained a row
			"remote_content/matrix.org/Fs/Id/OfRemote01",
			"remote_thumbnail/matrix.org/Fs/Id/OfRemote01/96-96-image-webp-scale",
			"url_cache/2024-01-31/PreviewXYZ",
			"url_cache_thumbnails/2024-01-31/PreviewXYZ/64-48-image-jpeg-scale",
		}
		if got := bucket.Keys(); !slices.Equal(got, want) {
			t.Errorf("left in the bucket:\n%s", strings.Join(got, "\n"))
		}
		f, _ := os.Open(logPath)
		defer f.Close()
		var logged []string
		for sc := bufio.NewScanner(f); sc.Scan(); {
			fields := strings.Split(sc.Text(), "\t")
			if len(fields) != 3 || fields[2] != "10" {
				t.Errorf("log line %q", sc.Text())
			}
			logged = append(logged, fields[1])
		}
		slices.Sort(logged)
		if want := []string{"local_content/pu/rg/edLocalMedia0000000000", "remote_content/matrix.org/Pu/rg/edRemote", "remote_thumbnail/matrix.org/Pu/rg/edRemote/32-32-image-png-crop"}; !slices.Equal(logged, want) {
			t.Errorf("deleted-keys log: %q", logged)
		}
	})
}

// gainOnDelete is the bucket whose first HEAD comes after Synapse
// committed a row for the thumbnail purged earlier: the race reconcile's
// last check must win.
type gainOnDelete struct {
	*objstore.Mem
	db    *synapsetest.DB
	added bool
}

func (g *gainOnDelete) Head(ctx context.Context, key string) (objstore.Object, error) {
	return g.Mem.Head(ctx, key)
}

func (g *gainOnDelete) List(ctx context.Context, prefix string, recursive bool, fn func(objstore.Entry) bool) error {
	err := g.Mem.List(ctx, prefix, recursive, fn)
	if !g.added {
		g.added = true
		g.db.LocalThumbnail("purgedLocalMedia0000000000", 32, 32, "image/png", "crop")
	}
	return err
}

// An old Synapse's tables (schema 16: no url_cache, no media_length NULLs)
// are read as well.
func TestOldSchema(t *testing.T) {
	for name, mk := range map[string]func(testing.TB, string) *synapsetest.DB{"sqlite": synapsetest.SQLite, "postgres": synapsetest.Postgres} {
		t.Run(name, func(t *testing.T) {
			db := mk(t, synapsetest.V16)
			db.Local("abcdefghijkl", "")
			db.LocalThumbnail("abcdefghijkl", 1, 2, "image/gif", "crop")
			db.Remote("example.net", "m", "abcdefgh")
			src := open(t, db)
			var keys []string
			rows, err := src.Keys(context.Background(), func(k string) error { keys = append(keys, k); return nil })
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(keys)
			want := []string{"local_content/ab/cd/efghijkl", "local_thumbnails/ab/cd/efghijkl/1-2-image-gif-crop", "remote_content/example.net/ab/cd/efgh"}
			if !slices.Equal(keys, want) || rows.Local != 1 || rows.Remote != 1 {
				t.Fatalf("keys %q rows %+v", keys, rows)
			}
		})
	}
}

// Not Synapse's database, or not a database at all: a clear error.
func TestNotSynapsesDatabase(t *testing.T) {
	empty := synapsetest.SQLite(t, "CREATE TABLE users (name text);")
	if _, err := reconcile.Open(context.Background(), reconcile.Database{Engine: empty.Engine, Args: empty.Args}); err == nil || !strings.Contains(err.Error(), "no table local_media_repository") {
		t.Fatalf("a database without Synapse's tables: %v", err)
	}
	if _, err := reconcile.Open(context.Background(), reconcile.Database{Engine: "sqlite3", Args: map[string]any{"database": "/nonexistent/homeserver.db"}}); err == nil {
		t.Fatal("a missing SQLite file opened")
	}
}

// Keys a hostile or careless writer can put in a bucket (a newline, a NUL)
// are compared whole and deleted whole, or not at all: never cut into a
// key that names another object.
func TestHostileKeys(t *testing.T) {
	db := synapsetest.SQLite(t, synapsetest.Current)
	db.Local("abcdefghijkl", "")
	bucket := objstore.NewMem()
	keep := []string{
		"local_content/ab/cd/efghijkl",             // Synapse's
		"backups/weekly",                           // not Synapse's
		"backups/weekly\nlocal_content/zz/zz/zzzz", // not Synapse's either
	}
	doomed := []string{
		"local_content/ab/cd/efghijkl\nextra",
		"local_content/ab/cd/x\x00y",
		"local_content/ab/cd/efghijkl\x0000",
	}
	for _, k := range append(append([]string{}, keep...), doomed...) {
		bucket.SetObjectTime(k, []byte("x"), old)
	}
	src := open(t, db)
	rep, err := reconcile.Run(context.Background(), reconcile.Options{DB: src, Bucket: bucket, TempDir: t.TempDir(), Delete: true, RunKeys: 2})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Deleted.Count != int64(len(doomed)) || rep.Foreign.Count != 2 || rep.Matched.Count != 1 {
		t.Errorf("deleted %d, foreign %d, matched %d", rep.Deleted.Count, rep.Foreign.Count, rep.Matched.Count)
	}
	slices.Sort(keep)
	if got := bucket.Keys(); !slices.Equal(got, keep) {
		t.Errorf("left in the bucket: %q, want %q", got, keep)
	}
}
