package mounttest

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// checked holds the tests CheckLeaks already watches.
var checked sync.Map

// CheckLeaks makes t fail if, once the test and all its cleanups are
// done, something is left that was not there when CheckLeaks was first
// called for it: a mount below root, a process running binary (if binary
// is not ""), an open file descriptor other than a socket, or a
// goroutine. Call it before the test mounts anything, so that its check
// runs after every cleanup registered later; further calls for the same
// test do nothing. Tests that use it must not run in parallel.
//
// What is left is given 10 s to go: releases and unmounts finish in the
// background for a moment.
func CheckLeaks(t testing.TB, root, binary string) {
	t.Helper()
	if _, dup := checked.LoadOrStore(t, true); dup {
		return
	}
	before := takeHoldings(root, binary)
	goroutines := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		defer checked.Delete(t)
		var left []string
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			left = takeHoldings(root, binary).minus(before)
			// Keep-alive connections of the HTTP clients are a pool, not
			// a leak: a request let finish after a close returns its
			// connection to the pool.
			if err := goleak.Find(goroutines,
				goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
				goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
				// A test's own HTTP server (a proxy) is closed by a cleanup
				// that may run after this check; its connections go with it.
				goleak.IgnoreAnyFunction("net/http.(*conn).serve")); err != nil {
				left = append(left, err.Error())
			}
			if len(left) == 0 || time.Now().After(deadline) {
				break
			}
		}
		if len(left) > 0 {
			t.Errorf("left behind by the test:\n%s", strings.Join(left, "\n"))
		}
	})
}

// holdings are the mounts, processes and descriptors one check sees.
type holdings []string

// takeHoldings lists the mount points below root, the processes running
// binary, and this process's open descriptors but those ownedByRuntime,
// each as one line.
func takeHoldings(root, binary string) holdings {
	var h holdings
	info, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(info), "\n") {
		// Field 5 is the mount point, with spaces escaped as \040.
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], root+"/") {
			h = append(h, "mount "+f[4])
		}
	}
	if binary != "" {
		exes, _ := filepath.Glob("/proc/[0-9]*/exe")
		for _, exe := range exes {
			if target, err := os.Readlink(exe); err == nil && target == binary {
				h = append(h, "process "+filepath.Dir(exe))
			}
		}
	}
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, fd := range fds {
		target, err := os.Readlink("/proc/self/fd/" + fd.Name())
		if err != nil || ownedByRuntime(target) {
			continue
		}
		h = append(h, fmt.Sprintf("descriptor %s -> %s", fd.Name(), target))
	}
	return h
}

// ownedByRuntime says a descriptor's target is one that lives as long as
// the process by design: sockets (the HTTP clients' keep-alive pools), the
// runtime's poller, the listing of /proc/self/fd itself, and go-fuse's
// splice pool of pipe pairs with the /dev/null it drains them into.
func ownedByRuntime(target string) bool {
	for _, p := range []string{"socket:", "anon_inode:", "/proc/", "pipe:"} {
		if strings.HasPrefix(target, p) {
			return true
		}
	}
	return target == "/dev/null"
}

// minus is what h holds and before did not.
func (h holdings) minus(before holdings) []string {
	var out []string
	for _, x := range h {
		if !slices.Contains(before, x) {
			out = append(out, x)
		}
	}
	return out
}
