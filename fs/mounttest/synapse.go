// Package mounttest holds what tests that drive a mount share: writing a
// file the way Synapse does, and checking that a test left no mount,
// process, descriptor or goroutine behind.
package mounttest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// WriteLikeSynapse writes one file the way Synapse's media repository
// does (makedirs, open "wb" on the final name, 16 KiB writes, close, then
// getsize and a full re-read), and reports the first call that failed or
// a re-read that differs.
func WriteLikeSynapse(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	for off := 0; off < len(data); off += 16 << 10 {
		if _, err := f.Write(data[off:min(off+16<<10, len(data))]); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != int64(len(data)) {
		return fmt.Errorf("getsize of %s after close: %v %v, want %d bytes", path, fi, err, len(data))
	}
	got, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, data) {
		return fmt.Errorf("re-read of %s differs", path)
	}
	return nil
}

// MustWriteLikeSynapse is WriteLikeSynapse for a test that stops at the
// first failure.
func MustWriteLikeSynapse(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := WriteLikeSynapse(path, data); err != nil {
		t.Fatal(err)
	}
}
