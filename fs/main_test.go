package fs

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain checks, after every test of the package has run, that nothing
// leaked: no FUSE mount left, no file descriptor left open beyond a few the
// runtime may open lazily, no goroutine left running.
//
// The tests' temporary directories live in a root of this run's own, and
// only mounts below it count: go test runs other packages (whose mounts
// come and go) at the same time.
func TestMain(m *testing.M) {
	root, err := os.MkdirTemp("", "s3mediafs-fs-tests")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("TMPDIR", root)
	testRoot = root
	fds := openFDs()
	code := m.Run()
	if code == 0 {
		if err := leaks(fds); err != nil {
			fmt.Fprintln(os.Stderr, "leak check:", err)
			code = 1
		}
	}
	os.RemoveAll(root)
	os.Exit(code)
}

// testRoot holds every temporary directory of this run's tests.
var testRoot string

func leaks(fdsBefore int) error {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, " "+testRoot+"/") && (strings.Contains(line, " - fuse.s3mediafs ") || strings.Contains(line, "s3mediafs-test")) {
			return fmt.Errorf("a mount is left: %s", line)
		}
	}
	// Releases and unmounts finish in the background for a moment.
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		// Keep-alive connections of the HTTP clients are a pool, not a
		// leak: a request the cache let finish after its close (superseded
		// uploads are not cancelled) returns its connection to the pool.
		err = goleak.Find(goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"))
		if n := openFDs(); err == nil && n > fdsBefore+8 {
			err = fmt.Errorf("%d descriptors open, %d before the tests", n, fdsBefore)
		}
		if err == nil || time.Now().After(deadline) {
			return err
		}
	}
}

// openFDs counts the open descriptors other than sockets: the HTTP
// clients' keep-alive pools hold sockets by design (see leaks).
func openFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	n := 0
	for _, e := range ents {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && !strings.HasPrefix(target, "socket:") {
			n++
		}
	}
	return n
}
