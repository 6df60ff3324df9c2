// Package synapsetest makes Synapse databases for tests: a SQLite file, or
// a database of its own on the PostgreSQL server named by
// $S3MEDIAFS_TEST_POSTGRES (scripts/postgres.sh run starts one), with
// Synapse's media tables in their real column layout.
package synapsetest

import (
	"database/sql"
	_ "embed"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"
)

// Schemas: the current layout, and the oldest (schema 16).
var (
	//go:embed synapse-media.sql
	Current string
	//go:embed synapse-media-v16.sql
	V16 string
)

// DB is one Synapse database under test.
type DB struct {
	t   testing.TB
	SQL *sql.DB
	// Engine and Args are the homeserver.yaml database section.
	Engine string
	Args   map[string]any
	dollar bool
}

// SQLite makes a SQLite Synapse database with the given schema.
func SQLite(t testing.TB, schema string) *DB {
	t.Helper()
	path := filepath.Join(t.TempDir(), "homeserver.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	d := &DB{t: t, SQL: db, Engine: "sqlite3", Args: map[string]any{"database": path}}
	d.Exec(schema)
	return d
}

// Postgres makes a PostgreSQL Synapse database with the given schema. It
// skips the test when no server is configured, except in CI, where it
// fails: .ci/run starts one.
func Postgres(t testing.TB, schema string) *DB {
	t.Helper()
	dsn := os.Getenv("S3MEDIAFS_TEST_POSTGRES")
	if dsn == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("S3MEDIAFS_TEST_POSTGRES is not set: run the tests through scripts/postgres.sh run")
		}
		t.Skip("no PostgreSQL server: run through scripts/postgres.sh run")
	}
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	name := fmt.Sprintf("synapse_%d", rand.Uint64()%1e12)
	if _, err := admin.Exec("CREATE DATABASE " + name + " ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a, err := sql.Open("pgx", dsn)
		if err == nil {
			a.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
			a.Close()
		}
	})
	args := map[string]any{"cp_min": 5, "cp_max": 10}
	for _, kv := range strings.Fields(dsn) {
		k, v, _ := strings.Cut(kv, "=")
		args[k] = v
	}
	delete(args, "dbname")
	args["database"] = name
	db, err := sql.Open("pgx", strings.Replace(dsn, "dbname=postgres", "dbname="+name, 1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	d := &DB{t: t, SQL: db, Engine: "psycopg2", Args: args, dollar: true}
	d.Exec(schema)
	return d
}

// Exec runs statements, failing the test on an error.
func (d *DB) Exec(stmts string, args ...any) {
	d.t.Helper()
	if len(args) > 0 && d.dollar {
		stmts = dollarPlaceholders(stmts)
	}
	if _, err := d.SQL.Exec(stmts, args...); err != nil {
		d.t.Fatalf("%v\n%s", err, stmts)
	}
}

func dollarPlaceholders(q string) string {
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Local adds a local_media_repository row; urlCache non-empty makes it a
// URL preview.
func (d *DB) Local(mediaID, urlCache string) {
	d.t.Helper()
	var uc any
	if urlCache != "" {
		uc = urlCache
	}
	if d.hasURLCache() {
		d.Exec("INSERT INTO local_media_repository (media_id, media_type, media_length, created_ts, upload_name, user_id, url_cache) VALUES (?, 'image/png', 100, 1700000000000, 'x.png', '@a:example.org', ?)", mediaID, uc)
		return
	}
	d.Exec("INSERT INTO local_media_repository (media_id, media_type, media_length, created_ts, upload_name, user_id) VALUES (?, 'image/png', 100, 1700000000000, 'x.png', '@a:example.org')", mediaID)
}

// Pending adds a local media row for an upload that has not arrived
// (media_length NULL).
func (d *DB) Pending(mediaID string) {
	d.t.Helper()
	d.Exec("INSERT INTO local_media_repository (media_id, media_type, created_ts, user_id) VALUES (?, 'image/png', 1700000000000, '@a:example.org')", mediaID)
}

// LocalThumbnail adds a local_media_repository_thumbnails row.
func (d *DB) LocalThumbnail(mediaID string, w, h int, typ, method string) {
	d.t.Helper()
	d.Exec("INSERT INTO local_media_repository_thumbnails (media_id, thumbnail_width, thumbnail_height, thumbnail_type, thumbnail_method, thumbnail_length) VALUES (?, ?, ?, ?, ?, 10)", mediaID, w, h, typ, method)
}

// Remote adds a remote_media_cache row.
func (d *DB) Remote(origin, mediaID, filesystemID string) {
	d.t.Helper()
	d.Exec("INSERT INTO remote_media_cache (media_origin, media_id, media_type, created_ts, upload_name, media_length, filesystem_id) VALUES (?, ?, 'image/jpeg', 1700000000000, 'r.jpg', 100, ?)", origin, mediaID, filesystemID)
}

// RemoteThumbnail adds a remote_media_cache_thumbnails row.
func (d *DB) RemoteThumbnail(origin, mediaID, filesystemID string, w, h int, typ, method string) {
	d.t.Helper()
	d.Exec("INSERT INTO remote_media_cache_thumbnails (media_origin, media_id, thumbnail_width, thumbnail_height, thumbnail_method, thumbnail_type, thumbnail_length, filesystem_id) VALUES (?, ?, ?, ?, ?, ?, 10, ?)", origin, mediaID, w, h, method, typ, filesystemID)
}

func (d *DB) hasURLCache() bool {
	q := "SELECT count(*) FROM pragma_table_info('local_media_repository') WHERE name = 'url_cache'"
	if d.dollar {
		q = "SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'local_media_repository' AND column_name = 'url_cache'"
	}
	var n int
	if err := d.SQL.QueryRow(q).Scan(&n); err != nil {
		d.t.Fatal(err)
	}
	return n == 1
}

// Homeserver writes a homeserver.yaml with this database and the given
// media_store_path, and returns its path.
func (d *DB) Homeserver(mediaStore string) string {
	d.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "server_name: example.org\nmedia_store_path: %q\ndatabase:\n  name: %s\n  args:\n", mediaStore, d.Engine)
	for k, v := range d.Args {
		fmt.Fprintf(&b, "    %s: %q\n", k, fmt.Sprint(v))
	}
	p := filepath.Join(d.t.TempDir(), "homeserver.yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		d.t.Fatal(err)
	}
	return p
}
