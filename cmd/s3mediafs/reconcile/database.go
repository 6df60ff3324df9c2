package reconcile

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"go.yaml.in/yaml/v3"
	_ "modernc.org/sqlite" // database/sql driver "sqlite", pure Go
)

// Database is where Synapse keeps its tables: the database section of
// homeserver.yaml.
type Database struct {
	// Engine is Synapse's name for the driver: "psycopg2" or "sqlite3".
	Engine string
	// Args are the driver's arguments: libpq keys for psycopg2 (user,
	// password, database, host, port, sslmode…), database for sqlite3.
	Args map[string]any
}

// DatabaseFromHomeserver reads the database section of a homeserver.yaml.
// Synapse's default, when the section is absent, is SQLite at
// homeserver.db beside the config.
func DatabaseFromHomeserver(path string) (Database, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Database{}, fmt.Errorf("synapse config: %w", err)
	}
	var hs struct {
		Database *struct {
			Name string         `yaml:"name"`
			Args map[string]any `yaml:"args"`
		} `yaml:"database"`
	}
	if err := yaml.Unmarshal(b, &hs); err != nil {
		return Database{}, fmt.Errorf("synapse config %s: %w", path, err)
	}
	if hs.Database == nil {
		return Database{Engine: "sqlite3", Args: map[string]any{"database": filepath.Join(filepath.Dir(path), "homeserver.db")}}, nil
	}
	db := Database{Engine: hs.Database.Name, Args: hs.Database.Args}
	switch db.Engine {
	case "psycopg2", "psycopg", "sqlite3":
	default:
		return Database{}, fmt.Errorf("synapse config %s: database name %q: reconcile reads psycopg2 (PostgreSQL) or sqlite3", path, db.Engine)
	}
	return db, nil
}

// DatabaseFromFlag is the --database override: a PostgreSQL URL
// (postgres://…) or libpq key=value string, or else a SQLite file.
func DatabaseFromFlag(s string) Database {
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") || strings.Contains(s, "=") {
		return Database{Engine: "psycopg2", Args: map[string]any{"dsn": s}}
	}
	return Database{Engine: "sqlite3", Args: map[string]any{"database": s}}
}

// postgresDSN turns psycopg2's arguments into a libpq key=value string.
// Synapse's own pool settings (cp_*) are not libpq's and are left out;
// "database" is psycopg2's spelling of dbname. PG* environment variables
// fill what the arguments leave out, as they do for Synapse.
func postgresDSN(args map[string]any) string {
	if dsn, ok := args["dsn"].(string); ok {
		return dsn
	}
	var parts []string
	for k, v := range args {
		if strings.HasPrefix(k, "cp_") || v == nil {
			continue
		}
		if k == "database" {
			k = "dbname"
		}
		val := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(fmt.Sprint(v))
		parts = append(parts, k+"='"+val+"'")
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

// Source reads media rows from Synapse's database, never writing to it.
type Source struct {
	db      *sql.DB
	engine  string
	columns map[string][]string // table -> columns present
}

// Open connects to the database read-only: SQLite is opened in read-only
// mode with query_only set; PostgreSQL is read in READ ONLY transactions.
func Open(ctx context.Context, d Database) (*Source, error) {
	var db *sql.DB
	var err error
	s := &Source{engine: "postgres"}
	switch d.Engine {
	case "sqlite3":
		path, _ := d.Args["database"].(string)
		if path == "" {
			return nil, errors.New("sqlite3 database: no database path")
		}
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("sqlite3 database: %w", err)
		}
		abs, _ := filepath.Abs(path)
		u := url.URL{Scheme: "file", OmitHost: true, Path: abs,
			RawQuery: "mode=ro&_pragma=query_only(1)&_pragma=busy_timeout(10000)"}
		db, err = sql.Open("sqlite", u.String())
		s.engine = "sqlite"
	default:
		db, err = sql.Open("pgx", postgresDSN(d.Args))
	}
	if err != nil {
		return nil, fmt.Errorf("open Synapse's database: %w", err)
	}
	db.SetMaxOpenConns(2)
	s.db = db
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to Synapse's database: %w", err)
	}
	if err := s.readColumns(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Close disconnects.
func (s *Source) Close() error { return s.db.Close() }

// mediaTables are the tables reconcile reads, with the columns it needs;
// each is there in every Synapse version.
var mediaTables = []struct {
	name string
	need []string
}{
	{"local_media_repository", []string{"media_id"}},
	{"local_media_repository_thumbnails", []string{"media_id", "thumbnail_width", "thumbnail_height", "thumbnail_type", "thumbnail_method"}},
	{"remote_media_cache", []string{"media_origin", "filesystem_id"}},
	{"remote_media_cache_thumbnails", []string{"media_origin", "filesystem_id", "thumbnail_width", "thumbnail_height", "thumbnail_type", "thumbnail_method"}},
}

func (s *Source) readColumns(ctx context.Context) error {
	s.columns = map[string][]string{}
	q := `SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1`
	if s.engine == "sqlite" {
		q = `SELECT name FROM pragma_table_info($1)`
	}
	for _, mt := range mediaTables {
		table, need := mt.name, mt.need
		rows, err := s.db.QueryContext(ctx, q, table)
		if err != nil {
			return fmt.Errorf("read the layout of %s: %w", table, err)
		}
		var cols []string
		for rows.Next() {
			var c string
			if err := rows.Scan(&c); err != nil {
				rows.Close()
				return err
			}
			cols = append(cols, c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read the layout of %s: %w", table, err)
		}
		if len(cols) == 0 {
			return fmt.Errorf("no table %s in the database: is it Synapse's?", table)
		}
		for _, c := range need {
			if !slices.Contains(cols, c) {
				return fmt.Errorf("table %s has no column %s: a Synapse version reconcile does not know", table, c)
			}
		}
		s.columns[table] = cols
	}
	return nil
}

func (s *Source) has(table, column string) bool { return slices.Contains(s.columns[table], column) }

// readOnly runs fn in a read-only transaction: one consistent snapshot on
// PostgreSQL (REPEATABLE READ), one read transaction on SQLite.
func (s *Source) readOnly(ctx context.Context, fn func(*sql.Tx) error) error {
	opts := &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead}
	if s.engine == "sqlite" {
		opts = nil // query_only already forbids writes; the driver has no READ ONLY
	}
	tx, err := s.db.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("begin a read-only transaction: %w", err)
	}
	defer tx.Rollback()
	return fn(tx)
}
