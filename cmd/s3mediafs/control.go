package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/s3mediafs/s3mediafs/cache"
)

// The control socket: HTTP over a Unix socket, root-only (0600), serving
// GET /status and POST /flush to the status and flush commands.

// controlDir holds one socket per mount unless control_socket says otherwise.
const controlDir = "/run/s3mediafs"

// socketFor names the control socket of a mount point, escaped the way
// systemd names units ("/var/lib/x-y" -> "var-lib-x\x2dy").
func socketFor(mountpoint string) string {
	p := strings.Trim(filepath.Clean(mountpoint), "/")
	p = strings.ReplaceAll(p, "-", `\x2d`)
	p = strings.ReplaceAll(p, "/", "-")
	if p == "" {
		p = "-"
	}
	return filepath.Join(controlDir, p+".sock")
}

// daemonStatus is what GET /status answers.
type daemonStatus struct {
	Mountpoint string  `json:"mountpoint"`
	Bucket     string  `json:"bucket"`
	Prefix     string  `json:"prefix"`
	Version    string  `json:"version"`
	Mode       string  `json:"mode"`    // write-back or synchronous
	IOMode     string  `json:"io_mode"` // passthrough, or daemon when every byte passes through it
	UptimeSecs float64 `json:"uptime_secs"`
	UploadRate float64 `json:"upload_rate_bytes_per_sec"` // over the last minute
	cache.Status
}

// controlServer serves the socket for one mount.
type controlServer struct {
	c       *cache.Cache
	info    daemonStatus
	started time.Time
	log     *slog.Logger

	mu      sync.Mutex // guards samples and info.IOMode
	samples []rateSample
}

type rateSample struct {
	at    time.Time
	bytes uint64
}

// setIOMode records how reads and writes are served, once the mount knows.
func (s *controlServer) setIOMode(mode string) {
	s.mu.Lock()
	s.info.IOMode = mode
	s.mu.Unlock()
}

func (s *controlServer) status() daemonStatus {
	s.mu.Lock()
	st := s.info
	s.mu.Unlock()
	st.Status = s.c.Status()
	st.UptimeSecs = time.Since(s.started).Seconds()
	s.mu.Lock()
	if n := len(s.samples); n > 0 {
		first := s.samples[0]
		if d := time.Since(first.at).Seconds(); d > 0 {
			st.UploadRate = float64(st.UploadedBytes-first.bytes) / d
		}
	}
	s.mu.Unlock()
	return st
}

// sample keeps a minute of upload totals for the rate.
func (s *controlServer) sample(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		s.mu.Lock()
		now := time.Now()
		s.samples = append(s.samples, rateSample{now, s.c.Status().UploadedBytes})
		for len(s.samples) > 1 && now.Sub(s.samples[0].at) > time.Minute {
			s.samples = s.samples[1:]
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *controlServer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.status())
	})
	mux.HandleFunc("POST /flush", func(w http.ResponseWriter, r *http.Request) {
		timeout := time.Hour
		if v := r.URL.Query().Get("timeout"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				writeJSON(w, http.StatusBadRequest, flushResult{Error: "bad timeout: " + err.Error()})
				return
			}
			timeout = d
		}
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		left, err := s.c.Flush(ctx)
		res := flushResult{Remaining: left, Done: err == nil && left == 0}
		if err != nil {
			res.Error = err.Error()
		}
		writeJSON(w, http.StatusOK, res)
	})
	// GET /local streams the files only the cache holds (not yet in S3,
	// or kept local), one JSON object a line, for reconcile.
	mux.HandleFunc("GET /local", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		err := s.c.NotInStore(func(p string, size int64) error {
			return enc.Encode(cachedFileLine{Path: []byte(p), Size: size})
		})
		if err != nil {
			// The status is sent already: an error line ends the stream.
			enc.Encode(cachedFileLine{Error: err.Error()})
		}
	})
	return mux
}

// cachedFileLine is one line of GET /local. The path is bytes (base64 in
// JSON), so that it comes back byte for byte whatever it holds.
type cachedFileLine struct {
	Path  []byte `json:"path,omitempty"`
	Size  int64  `json:"size,omitempty"`
	Error string `json:"error,omitempty"`
}

type flushResult struct {
	Done      bool   `json:"done"`
	Remaining int    `json:"remaining"`
	Error     string `json:"error,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// listenControl opens the socket with root-only permissions, replacing a
// stale one left by a killed daemon.
func listenControl(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
		conn.Close()
		return nil, fmt.Errorf("control socket %s is in use by another s3mediafs", path)
	}
	os.Remove(path)
	// The directory is 0700, so the socket is root-only from the start.
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return ln, nil
}

// callDaemon sends one request to a daemon's socket and decodes its
// JSON answer into out.
func callDaemon(socket, method, path string, out any) error {
	resp, err := daemonRequest(socket, method, path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("bad answer from the daemon: %w", err)
	}
	return nil
}

// daemonRequest sends one request over the control socket.
func daemonRequest(socket, method, path string) (*http.Response, error) {
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}
	req, err := http.NewRequest(method, "http://s3mediafs"+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the daemon at %s: %w", socket, err)
	}
	return resp, nil
}

// daemonLocalFiles streams GET /local: the files the running daemon's
// cache holds and S3 does not.
func daemonLocalFiles(socket string, fn func(path string, size int64) error) error {
	resp, err := daemonRequest(socket, http.MethodGet, "/local")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the daemon at %s answered %s to GET /local (an older s3mediafs? restart it)", socket, resp.Status)
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var f cachedFileLine
		if err := dec.Decode(&f); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("bad answer from the daemon: %w", err)
		}
		if f.Error != "" {
			return fmt.Errorf("the daemon: %s", f.Error)
		}
		if err := fn(string(f.Path), f.Size); err != nil {
			return err
		}
	}
}

// findSocket picks the socket from a mount point, or the only one there is.
func findSocket(socket, mountpoint string) (string, error) {
	switch {
	case socket != "":
		return socket, nil
	case mountpoint != "":
		abs, err := filepath.Abs(mountpoint)
		if err != nil {
			return "", err
		}
		return socketFor(abs), nil
	}
	matches, _ := filepath.Glob(filepath.Join(controlDir, "*.sock"))
	switch len(matches) {
	case 0:
		return "", fmt.Errorf("no s3mediafs mount found in %s", controlDir)
	case 1:
		return matches[0], nil
	}
	return "", fmt.Errorf("several s3mediafs mounts (%d sockets in %s): name the MOUNTPOINT", len(matches), controlDir)
}

// parseControlArgs reads [--socket P] [--config F] [--synapse-config F]
// [--json] [--timeout D] [MOUNTPOINT]. The socket is --socket, else the
// configuration's control_socket, else the one of MOUNTPOINT (or of
// homeserver.yaml's media_store_path), else the only one there is. The
// configuration is loaded as mount loads it; its bucket is not needed.
func parseControlArgs(name string, args []string, stderr io.Writer) (socket string, asJSON bool, timeout time.Duration, err error) {
	fl := flag.NewFlagSet(name, flag.ContinueOnError)
	fl.SetOutput(stderr)
	sock := fl.String("socket", "", "control socket `path` (default: control_socket, or derived from MOUNTPOINT)")
	configPath := fl.String("config", "", "s3mediafs configuration `file` (for control_socket)")
	synapsePath := fl.String("synapse-config", os.Getenv("SYNAPSE_CONFIG_PATH"), "Synapse's homeserver.yaml (for media_store_path)")
	js := fl.Bool("json", false, "print JSON")
	to := fl.Duration("timeout", 0, "give up after this long (flush)")
	if err := fl.Parse(args); err != nil {
		return "", false, 0, err
	}
	if fl.NArg() > 1 {
		return "", false, 0, errors.New("one MOUNTPOINT at most")
	}
	mountpoint := fl.Arg(0)
	if *sock == "" && (*configPath != "" || *synapsePath != "") {
		cfg, mediaStore, err := resolveConfig(*configPath, *synapsePath, "")
		if err != nil && !errors.Is(err, errNoProvider) {
			return "", false, 0, err
		}
		*sock = cfg.ControlSocket
		if mountpoint == "" {
			mountpoint = mediaStore
		}
	}
	socket, err = findSocket(*sock, mountpoint)
	return socket, *js, *to, err
}

func runStatus(args []string, stdout, stderr io.Writer) int {
	socket, asJSON, _, err := parseControlArgs("status", args, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "s3mediafs status:", err)
		return exitUsage
	}
	var st daemonStatus
	if err := callDaemon(socket, http.MethodGet, "/status", &st); err != nil {
		fmt.Fprintln(stderr, "s3mediafs status:", err)
		return exitError
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(st)
		return exitOK
	}
	printStatus(stdout, st)
	return exitOK
}

func printStatus(w io.Writer, st daemonStatus) {
	b := func(n int64) string { return humanize.IBytes(uint64(max(n, 0))) }
	limit := "no limit"
	if st.MaxSize > 0 {
		limit = b(st.MaxSize)
	}
	fmt.Fprintf(w, "s3mediafs %s on %s (bucket %s, prefix %q, %s, %s I/O)\n", st.Version, st.Mountpoint, st.Bucket, st.Prefix, st.Mode, st.IOMode)
	fmt.Fprintf(w, "  not yet in S3:  %d files, %s; %d owed, oldest waiting %s\n",
		st.DirtyFiles, b(st.DirtyBytes), st.QueueDepth, time.Duration(st.OldestPending*float64(time.Second)).Round(time.Second))
	fmt.Fprintf(w, "  uploads:        %s/s over the last minute; %d uploads (%s), %d deletes since start\n",
		b(int64(st.UploadRate)), st.Uploads, b(int64(st.UploadedBytes)), st.Deletes)
	fmt.Fprintf(w, "  cache:          %s of %s; %s free on the cache filesystem\n", b(st.LocalBytes), limit, b(st.FreeBytes))
	fmt.Fprintf(w, "  reads:          %d hits, %d misses (%s fetched), %d evictions\n", st.Hits, st.Misses, b(int64(st.FetchedBytes)), st.Evictions)
	fmt.Fprintf(w, "  S3 errors:      %d transient, %d permanent\n", st.ErrorsTransient, st.ErrorsPermanent)
	if st.LastError != "" {
		fmt.Fprintf(w, "  last S3 error:  %s (%s ago)\n", st.LastError, time.Since(st.LastErrorAt).Round(time.Second))
	}
	fmt.Fprintf(w, "  up:             %s\n", time.Duration(st.UptimeSecs*float64(time.Second)).Round(time.Second))
}

func runFlush(args []string, stdout, stderr io.Writer) int {
	socket, asJSON, timeout, err := parseControlArgs("flush", args, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "s3mediafs flush:", err)
		return exitUsage
	}
	path := "/flush"
	if timeout > 0 {
		path += "?timeout=" + timeout.String()
	}
	var res flushResult
	if err := callDaemon(socket, http.MethodPost, path, &res); err != nil {
		fmt.Fprintln(stderr, "s3mediafs flush:", err)
		return exitError
	}
	if asJSON {
		json.NewEncoder(stdout).Encode(res)
	} else if res.Done {
		fmt.Fprintln(stdout, "flushed: everything written before the flush is in S3")
	} else {
		fmt.Fprintf(stdout, "not flushed: %d files still owed to S3 (%s)\n", res.Remaining, res.Error)
	}
	if !res.Done {
		return exitError
	}
	return exitOK
}
