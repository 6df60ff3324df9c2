// Command s3mediafs mounts a Synapse media store over an S3 bucket with a
// local write-back cache.
package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `s3mediafs — a Synapse media store on S3 behind a local write-back cache

Usage:
  s3mediafs mount [flags] MOUNTPOINT      serve the mount in the foreground
  s3mediafs mount --embedded-s3 DIR MOUNTPOINT
                                          quickstart: an in-process S3 server
                                          keeps objects in DIR (NOT the cloud)
  s3mediafs version

Run "s3mediafs mount -h" for the mount flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "mount":
		return runMount(args[1:], stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "s3mediafs", version)
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "s3mediafs: unknown command %q\n\n%s", args[0], usage)
	return exitUsage
}

// newLogger builds the daemon's logger; it is passed down, never global.
func newLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(strings.ToUpper(level)))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
