// The database read from homeserver.yaml.

package reconcile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDatabaseFromHomeserver(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "homeserver.yaml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	db, err := DatabaseFromHomeserver(write(`database:
  name: psycopg2
  txn_limit: 10000
  args:
    user: synapse
    password: "it's a \\secret"
    database: synapse
    host: /var/run/postgresql
    port: 5432
    sslmode: require
    cp_min: 5
    cp_max: 10
`))
	if err != nil {
		t.Fatal(err)
	}
	want := `dbname='synapse' host='/var/run/postgresql' password='it\'s a \\secret' port='5432' sslmode='require' user='synapse'`
	if got := postgresDSN(db.Args); got != want {
		t.Errorf("dsn\n got %s\nwant %s", got, want)
	}
	db, err = DatabaseFromHomeserver(write("database:\n  name: sqlite3\n  args:\n    database: /data/homeserver.db\n"))
	if err != nil || db.Engine != "sqlite3" || db.Args["database"] != "/data/homeserver.db" {
		t.Errorf("sqlite3: %+v %v", db, err)
	}
	// No database section: Synapse's default, homeserver.db beside it.
	db, err = DatabaseFromHomeserver(write("server_name: example.org\n"))
	if err != nil || db.Args["database"] != filepath.Join(dir, "homeserver.db") {
		t.Errorf("default: %+v %v", db, err)
	}
	if _, err := DatabaseFromHomeserver(write("database:\n  name: mysql\n")); err == nil {
		t.Error("an engine Synapse does not have was taken")
	}
	for flag, engine := range map[string]string{
		"postgres://synapse@127.0.0.1/synapse": "psycopg2",
		"host=/run/postgresql dbname=synapse":  "psycopg2",
		"/var/lib/synapse/homeserver.db":       "sqlite3",
	} {
		if got := DatabaseFromFlag(flag); got.Engine != engine {
			t.Errorf("--database %s: %s, want %s", flag, got.Engine, engine)
		}
	}
}
