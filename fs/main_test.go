// The package's test set-up: a temporary root of the run's own.

package fs

import (
	"fmt"
	"os"
	"testing"
)

// TestMain gives the tests' temporary directories a root of this run's
// own, so that each test's leak check (mounttest.CheckLeaks, from
// testMountWith) counts only its own mounts: go test runs other packages,
// whose mounts come and go, at the same time.
func TestMain(m *testing.M) {
	if p := os.Getenv(mapHelperEnv); p != "" {
		os.Exit(mapAndCopy(p))
	}
	root, err := os.MkdirTemp("", "s3mediafs-fs-tests")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("TMPDIR", root)
	testRoot = root
	code := m.Run()
	os.RemoveAll(root)
	os.Exit(code)
}

// testRoot holds every temporary directory of this run's tests.
var testRoot string
