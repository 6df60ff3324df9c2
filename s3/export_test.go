// Internals the package's external tests use.

package s3

// SetLookupPage sets Lookup's page size for a test; it returns the undo.
func SetLookupPage(n int32) (restore func()) {
	old := lookupPage
	lookupPage = n
	return func() { lookupPage = old }
}
