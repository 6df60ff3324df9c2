package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3bolt"
	bolt "go.etcd.io/bbolt"
)

// embeddedStore is an S3-protocol server inside the daemon, keeping objects
// in one database file under a local directory. It exists for the
// quickstart only: the data is on this machine, not in any cloud.
//
// gofakes3 checks no signatures, so it listens on no port: its Unix socket
// sits in a directory only the daemon's user can enter (0700), and the
// daemon's S3 client alone dials it. Another local user can reach neither
// it nor the objects' file.
type embeddedStore struct {
	Socket string
	server *http.Server
	db     *bolt.DB
}

const (
	embeddedBucket = "s3mediafs"
	embeddedKey    = "s3mediafs-embedded"
	embeddedSecret = "s3mediafs-embedded-secret"
)

func startEmbeddedStore(dir, bucket string, log *slog.Logger) (_ *embeddedStore, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded store: %w", err)
	}
	// bolt waits for the file's lock without end unless told otherwise:
	// a second daemon on the same directory must fail, not hang.
	db, err := bolt.Open(filepath.Join(dir, "objects.bolt"), 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("embedded store in %s: %w (is another s3mediafs using it?)", dir, err)
	}
	defer func() {
		if err != nil {
			db.Close()
		}
	}()
	backend := &boltBackend{Backend: s3bolt.New(db)}
	if ok, err := backend.BucketExists(bucket); err != nil {
		return nil, fmt.Errorf("embedded store: %w", err)
	} else if !ok {
		if err := backend.CreateBucket(bucket); err != nil {
			return nil, fmt.Errorf("embedded store: create bucket: %w", err)
		}
	}
	faker := gofakes3.New(backend, gofakes3.WithoutVersioning(), gofakes3.WithTimeSkewLimit(0))
	// The directory may have been made before, more open: make it the
	// owner's alone before anything is put in it.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded store: %w", err)
	}
	sock := filepath.Join(dir, "s3.sock")
	os.Remove(sock) // left by a daemon that was killed
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return nil, fmt.Errorf("embedded store: %w", err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("embedded store: %w", err)
	}
	srv := &http.Server{Handler: faker.Server(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("embedded store stopped", "err", err)
		}
	}()
	return &embeddedStore{Socket: sock, server: srv, db: db}, nil
}

// Close stops serving, waiting a few seconds for requests under way, and
// closes the objects' file.
func (e *embeddedStore) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return errors.Join(e.server.Shutdown(ctx), e.db.Close())
}
