package cache

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// checkPath rejects paths the store cannot hold or that could escape the
// cache: empty components, "." and "..", NUL bytes, over-long keys.
func (c *Cache) checkPath(p string) error {
	if p == "" {
		return nil
	}
	if len(p) > c.opts.MaxKeyLen {
		return fmt.Errorf("%q: %w", p, ErrNameTooLong)
	}
	return validPath(p)
}

// maxNameLen is the longest name Linux tools can use (NAME_MAX).
const maxNameLen = 255

func validPath(p string) error {
	if strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || strings.ContainsRune(p, 0) {
		return fmt.Errorf("path %q: %w", p, ErrInvalid)
	}
	if !utf8.ValidString(p) {
		return fmt.Errorf("path %q: %w", p, ErrNotUTF8)
	}
	for _, part := range strings.Split(p, "/") {
		if part == "" || part == "." || part == ".." {
			return fmt.Errorf("path %q: %w", p, ErrInvalid)
		}
		if len(part) > maxNameLen {
			return fmt.Errorf("a name of %d bytes: %w", len(part), ErrNameTooLong)
		}
	}
	return nil
}

// newDataID names a new local data file, recording its birth for the
// orphan sweep.
func (c *Cache) newDataID() string {
	id := randomID()
	c.births.add(id)
	return id
}

func randomID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b[:])
}

// dataPath is where the data file named id lives; the two-character fan-out
// keeps directories small.
func (c *Cache) dataPath(id string) string {
	return filepath.Join(c.dataDir, id[:2], id)
}

// createData makes a new, empty data file.
func (c *Cache) createData() (string, *os.File, error) {
	id := c.newDataID()
	p := c.dataPath(id)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrNotExist) {
		if err = os.MkdirAll(filepath.Dir(p), 0o700); err == nil {
			f, err = os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		}
	}
	if err != nil {
		return "", nil, fmt.Errorf("create data file: %w", err)
	}
	return id, f, nil
}

func (c *Cache) removeData(id string) {
	if id == "" {
		return
	}
	if err := os.Remove(c.dataPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		c.log.Warn("could not remove data file", "id", id, "err", err)
	}
}
