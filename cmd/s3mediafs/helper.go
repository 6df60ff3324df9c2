package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// helperName is the name under which mount(8) runs the binary for
// "mount -t s3mediafs" and fstab lines of type s3mediafs.
const helperName = "mount.s3mediafs"

// runHelper is mount.s3mediafs SOURCE MOUNTPOINT [-sfnv] [-o OPTIONS].
// SOURCE is the config file ("none" for options only). It returns once the
// mount serves (0) or failed (1, with the reason); the daemon goes on in
// the background.
func runHelper(args []string, stderr io.Writer) int {
	var pos []string
	opts := ""
	fake := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-o" && i+1 < len(args):
			i++
			opts = joinOpts(opts, args[i])
		case strings.HasPrefix(a, "-o"):
			opts = joinOpts(opts, a[2:])
		case a == "-f":
			fake = true
		case a == "-s" || a == "-n" || a == "-v":
		case strings.HasPrefix(a, "-"):
			fmt.Fprintf(stderr, "%s: unknown flag %s\n", helperName, a)
			return exitUsage
		default:
			pos = append(pos, a)
		}
	}
	if len(pos) != 2 {
		fmt.Fprintf(stderr, "usage: %s CONFIG_FILE MOUNTPOINT [-o options]\n", helperName)
		return exitUsage
	}
	mountArgs := []string{}
	if pos[0] != "none" && pos[0] != "s3mediafs" {
		mountArgs = append(mountArgs, "--config", pos[0])
	}
	if opts != "" {
		mountArgs = append(mountArgs, "-o", opts)
	}
	mountArgs = append(mountArgs, pos[1])
	if fake {
		// mount -f: check everything, mount nothing.
		if _, err := parseMountArgs(mountArgs, stderr); err != nil {
			fmt.Fprintln(stderr, helperName+":", err)
			return exitUsage
		}
		return exitOK
	}
	return daemonize(mountArgs, stderr)
}

func joinOpts(a, b string) string {
	if a == "" {
		return b
	}
	return a + "," + b
}

// defaultLogDir holds a detached daemon's log when log_file is not set.
const defaultLogDir = "/var/log/s3mediafs"

// readyFD is the descriptor a daemonized child reports readiness on.
const readyFD = 3

// daemonize starts "s3mediafs mount ARGS" detached from the caller and
// waits until it says the mount serves, or why it could not.
func daemonize(mountArgs []string, stderr io.Writer) int {
	// Check the configuration here, so its errors reach the caller even
	// before a child exists.
	m, err := parseMountArgs(mountArgs, io.Discard)
	if err != nil {
		fmt.Fprintln(stderr, "s3mediafs:", err)
		return exitUsage
	}
	// The daemon must not keep the caller's stdout and stderr open (a
	// caller reading them to EOF would wait for the daemon to exit), so it
	// logs to a file: log_file, or one named after the mount point.
	if m.cfg.LogFile == "" {
		abs, _ := filepath.Abs(m.mountpoint)
		logFile := filepath.Join(defaultLogDir, strings.TrimSuffix(filepath.Base(socketFor(abs)), ".sock")+".log")
		mountArgs = append([]string{"-o", "log_file=" + logFile}, mountArgs...)
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "s3mediafs:", err)
		return exitError
	}
	r, w, err := os.Pipe()
	if err != nil {
		fmt.Fprintln(stderr, "s3mediafs:", err)
		return exitError
	}
	child := exec.Command(exe, append([]string{"mount", "--ready-fd", fmt.Sprint(readyFD)}, mountArgs...)...)
	child.ExtraFiles = []*os.File{w} // becomes fd 3
	child.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := child.Start(); err != nil {
		fmt.Fprintln(stderr, "s3mediafs: start daemon:", err)
		return exitError
	}
	w.Close()
	line, _ := bufio.NewReader(r).ReadString('\n')
	r.Close()
	if strings.TrimSpace(line) == "ok" {
		child.Process.Release()
		return exitOK
	}
	child.Wait()
	msg := strings.TrimSpace(strings.TrimPrefix(line, "error: "))
	if msg == "" {
		msg = "the daemon exited before the mount was ready"
	}
	fmt.Fprintln(stderr, "s3mediafs:", msg)
	return exitError
}

// readyReporter tells a waiting parent (daemonize) how the start went.
type readyReporter struct{ f *os.File }

func newReadyReporter(fd int) *readyReporter {
	if fd <= 0 {
		return &readyReporter{}
	}
	return &readyReporter{f: os.NewFile(uintptr(fd), "ready")}
}

func (r *readyReporter) ready() {
	if r.f != nil {
		fmt.Fprintln(r.f, "ok")
		r.f.Close()
		r.f = nil
	}
}

func (r *readyReporter) failed(err error) {
	if r.f != nil {
		fmt.Fprintln(r.f, "error: "+strings.ReplaceAll(err.Error(), "\n", " "))
		r.f.Close()
		r.f = nil
	}
}
