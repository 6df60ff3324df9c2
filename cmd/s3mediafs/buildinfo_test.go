// The version line.

package main

import (
	"bytes"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// TestVersionLine: the version, the commit and the Go version, from build
// information, with a version stamped by the package build winning.
func TestVersionLine(t *testing.T) {
	info := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "true"}}}
	if got, want := versionLine("1.2.3", info), "s3mediafs 1.2.3 (commit 0123456789ab+dirty, go1.26.8)"; got != want {
		t.Fatalf("stamped: %q, want %q", got, want)
	}
	if got, want := versionLine("", info), "s3mediafs dev (commit 0123456789ab+dirty, go1.26.8)"; got != want {
		t.Fatalf("unstamped: %q, want %q", got, want)
	}
	info.Main.Version = "v0.4.0"
	info.Settings = nil
	if got, want := versionLine("", info), "s3mediafs v0.4.0 (commit unknown, go1.26.8)"; got != want {
		t.Fatalf("go install: %q, want %q", got, want)
	}
	if got := versionLine("", nil); !strings.Contains(got, "dev") {
		t.Fatalf("no build info: %q", got)
	}
	var out bytes.Buffer
	if code := run([]string{"--version"}, &out, &out); code != 0 || !strings.Contains(out.String(), runtime.Version()) {
		t.Fatalf("--version: %d %q", code, out.String())
	}
}
