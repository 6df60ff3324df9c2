package main

import (
	"bufio"
	"encoding/json"
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
	mountArgs, fake, err := parseHelperArgs(args)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", helperName, err)
		return exitUsage
	}
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

// parseHelperArgs turns mount(8)'s call of the helper into the mount
// command's arguments: the config file, the options, and the mount point
// as a positional argument of its own, whatever characters it holds.
//
// mount(8) always passes the source and the mount point first, then its
// flags (-sfnv, -o OPTIONS, -t TYPE, -N NAMESPACE), so those two are taken
// as they are, whatever they look like.
func parseHelperArgs(args []string) (mountArgs []string, fake bool, err error) {
	if len(args) < 2 {
		return nil, false, fmt.Errorf("usage: %s CONFIG_FILE MOUNTPOINT [-o options]", helperName)
	}
	pos := args[:2]
	opts := ""
	for i := 2; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-o" && i+1 < len(args):
			i++
			opts = joinOpts(opts, args[i])
		case strings.HasPrefix(a, "-o"):
			opts = joinOpts(opts, a[2:])
		case (a == "-t" || a == "-N") && i+1 < len(args):
			i++ // the type (s3mediafs) and a namespace mount(8) has entered
		case a == "-f":
			fake = true
		case a == "-s" || a == "-n" || a == "-v":
		default:
			return nil, false, fmt.Errorf("unexpected argument %q (usage: %s CONFIG_FILE MOUNTPOINT [-o options])", a, helperName)
		}
	}
	if pos[0] != "none" && pos[0] != "s3mediafs" {
		mountArgs = append(mountArgs, "--config", pos[0])
	}
	if opts != "" {
		mountArgs = append(mountArgs, "-o", opts)
	}
	// "--" ends the flags: a mount point that starts with "-" is still one.
	return append(mountArgs, "--", pos[1]), fake, nil
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

// handoffFD is the descriptor a daemonized child reads its configuration
// from (see handoff).
const handoffFD = 4

// handoff is what a daemonized child is told, privately: the resolved
// configuration (secrets included) and the mount point. Its command line,
// which any local user can read in /proc, carries none of it.
type handoff struct {
	Config     Config
	Mountpoint string
	Embedded   string
	DebugFUSE  bool
	Files      []string // the configuration files read, for the daemon's checks
}

// prepareHandoff resolves the mount mountArgs describe into what the
// detached daemon is told.
func prepareHandoff(mountArgs []string) (handoff, error) {
	m, err := parseMountArgs(mountArgs, io.Discard)
	if err != nil {
		return handoff{}, err
	}
	// The daemon must not keep the caller's stdout and stderr open (a
	// caller reading them to EOF would wait for the daemon to exit), so it
	// logs to a file: log_file, or one named after the mount point. It is
	// set in the configuration itself: no value is ever parsed again as
	// options, whatever commas the mount point holds.
	if m.cfg.LogFile == "" {
		abs, _ := filepath.Abs(m.mountpoint)
		m.cfg.LogFile = filepath.Join(defaultLogDir, strings.TrimSuffix(filepath.Base(socketFor(abs)), ".sock")+".log")
	}
	return handoff{Config: m.cfg, Mountpoint: m.mountpoint, Embedded: m.embedded, DebugFUSE: m.debugFUSE, Files: m.files}, nil
}

// daemonize starts "s3mediafs mount" detached from the caller, with the
// mount that mountArgs describe, and waits until it says the mount
// serves, or why it could not.
func daemonize(mountArgs []string, stderr io.Writer) int {
	// Check the configuration here, so its errors reach the caller even
	// before a child exists.
	h, err := prepareHandoff(mountArgs)
	if err != nil {
		fmt.Fprintln(stderr, "s3mediafs:", err)
		return exitUsage
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
	hr, hw, err := os.Pipe()
	if err != nil {
		fmt.Fprintln(stderr, "s3mediafs:", err)
		return exitError
	}
	child := exec.Command(exe, "mount", "--ready-fd", fmt.Sprint(readyFD), "--handoff-fd", fmt.Sprint(handoffFD))
	child.ExtraFiles = []*os.File{w, hr} // become fds 3 and 4
	child.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := child.Start(); err != nil {
		fmt.Fprintln(stderr, "s3mediafs: start daemon:", err)
		return exitError
	}
	w.Close()
	hr.Close()
	err = json.NewEncoder(hw).Encode(h)
	hw.Close()
	if err != nil {
		child.Process.Kill()
		child.Wait()
		fmt.Fprintln(stderr, "s3mediafs: hand the configuration to the daemon:", err)
		return exitError
	}
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
