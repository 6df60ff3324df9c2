// Command s3mediafs mounts a Synapse media store over an S3 bucket with a
// local write-back cache.
package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
)

const usage = `s3mediafs — a Synapse media store on S3 behind a local write-back cache

Usage:
  s3mediafs mount [flags] MOUNTPOINT      serve the mount in the foreground
  s3mediafs mount --embedded-s3 DIR MOUNTPOINT
                                          quickstart: an in-process S3 server
                                          keeps objects in DIR (NOT the cloud)
  s3mediafs mount --daemon ...            return once the mount serves
  s3mediafs status [--json] [MOUNTPOINT]  what the daemon holds and does
  s3mediafs flush [--timeout D] [MOUNTPOINT]
                                          wait until everything written so far
                                          is in S3 (exit 0) or time runs out (1)
  s3mediafs import --from DIR [flags]     upload an existing media store
  s3mediafs reconcile --synapse-config homeserver.yaml [--config FILE]
                    [--json] [--delete-orphans] [--min-age 24h]
                                          compare the bucket with Synapse's
                                          database: orphans, missing media;
                                          delete orphans (dry run by default)
  s3mediafs version                       version, commit and Go version

As mount.s3mediafs (a link to this binary) it is mount(8)'s helper:
  mount -t s3mediafs /etc/s3mediafs.yaml /var/lib/synapse/media_store

Run "s3mediafs mount -h" for the mount flags.
`

func main() {
	if filepath.Base(os.Args[0]) == helperName {
		os.Exit(runHelper(os.Args[1:], os.Stderr))
	}
	stop := profileCPU(os.Getenv("S3MEDIAFS_CPUPROFILE"))
	code := run(os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// profileCPU writes a CPU profile of the whole run to path, for
// developers measuring where the daemon's time goes (see the README's
// development section); an empty path profiles nothing.
func profileCPU(path string) (stop func()) {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "S3MEDIAFS_CPUPROFILE:", err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
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
	case "status":
		return runStatus(args[1:], stdout, stderr)
	case "flush":
		return runFlush(args[1:], stdout, stderr)
	case "import":
		return runImport(args[1:], stdout, stderr)
	case "reconcile":
		return runReconcile(args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, currentVersionLine())
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
