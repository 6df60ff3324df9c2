// The control socket's list of files only the cache holds.

package main

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/cache"
	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// GET /local hands reconcile the cache's unsent files, names byte for
// byte, newlines and quotes included.
func TestControlLocalFiles(t *testing.T) {
	c, err := cache.Open(cache.Options{Dir: t.TempDir(), Store: objstore.NewMem(), Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		LocalOnly: func(p string) bool { return true }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	names := map[string]int64{"url_cache/a\nb\"é": 3, "url_cache/plain": 5}
	if _, err := c.Mkdir(t.Context(), "url_cache", cache.NewFile{Mode: 0o755}); err != nil {
		t.Fatal(err)
	}
	for name, size := range names {
		h, _, err := c.Create(t.Context(), name, os.O_WRONLY|os.O_CREATE, cache.NewFile{Mode: 0o644})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.WriteAt(t.Context(), make([]byte, size), 0); err != nil {
			t.Fatal(err)
		}
		if err := h.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		h.Release(t.Context())
	}
	socket := filepath.Join(t.TempDir(), "ctl.sock")
	ln, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: (&controlServer{c: c, started: time.Now()}).handler()}
	go srv.Serve(ln)
	defer srv.Close()
	got := map[string]int64{}
	if err := daemonLocalFiles(socket, func(p string, size int64) error { got[p] = size; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["url_cache/a\nb\"é"] != 3 || got["url_cache/plain"] != 5 {
		t.Fatalf("GET /local: %v", got)
	}
}
