// Internals the package's external tests use.

package cache

import "testing"

// FillIndex is fillIndex for the external tests of this package.
func FillIndex(b *testing.B, c *Cache, n int) { fillIndex(b, c, n) }
