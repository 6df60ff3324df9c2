package cache

import (
	"fmt"
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

// localOnly reports whether p lies in a tree kept out of the store.
func (c *Cache) localOnly(p string) bool {
	return c.opts.LocalOnly != nil && c.opts.LocalOnly(p)
}

// versionState is the state of a new local version of p.
func (c *Cache) versionState(p string) State {
	if c.localOnly(p) {
		return Local
	}
	return Dirty
}
