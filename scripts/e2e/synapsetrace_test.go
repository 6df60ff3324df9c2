package e2e

import (
	"bufio"
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// reactorTracePrelude times, inside Synapse, the file-system calls its
// media storage makes when it serves a download: the os.path.exists and
// the open in MediaStorage.fetch_media and the reads and close of the
// file (Twisted's FileSender). Synapse 1.67 makes all of them on its
// reactor thread, so while one of them waits, no other request is
// served: their sum is time the whole homeserver stood still. Each call
// appends "op microseconds path" to the file S3MEDIAFS_SYNAPSE_TRACE
// names.
const reactorTracePrelude = `
import os as _os, time as _time
import synapse.rest.media.v1.media_storage as _ms
_trace_fd = _os.open(_os.environ["S3MEDIAFS_SYNAPSE_TRACE"], _os.O_WRONLY | _os.O_APPEND | _os.O_CREAT, 0o600)
def _note(op, t0, path):
    _os.write(_trace_fd, b"%s %d %s\n" % (op, int((_time.perf_counter() - t0) * 1e6), _os.fsencode(path)))
class _TracedPath:
    def __getattr__(self, name):
        return getattr(_os.path, name)
    def exists(self, p):
        t0 = _time.perf_counter()
        try:
            return _os.path.exists(p)
        finally:
            _note(b"exists", t0, p)
class _TracedOS:
    path = _TracedPath()
    def __getattr__(self, name):
        return getattr(_os, name)
class _TracedFile:
    def __init__(self, f, path):
        self._f, self._path = f, path
    def read(self, *a):
        t0 = _time.perf_counter()
        try:
            return self._f.read(*a)
        finally:
            _note(b"read", t0, self._path)
    def close(self):
        t0 = _time.perf_counter()
        try:
            return self._f.close()
        finally:
            _note(b"close", t0, self._path)
    def __getattr__(self, name):
        return getattr(self._f, name)
    def __enter__(self):
        return self
    def __exit__(self, *a):
        self.close()
def _traced_open(p, mode="r", *a, **k):
    if mode != "rb":
        return open(p, mode, *a, **k)
    t0 = _time.perf_counter()
    try:
        f = open(p, mode, *a, **k)
    finally:
        _note(b"open", t0, p)
    return _TracedFile(f, p)
_ms.os = _TracedOS()
_ms.open = _traced_open
`

// reactorTrace reads the calls a traced Synapse (reactorTracePrelude)
// has timed, from an offset on, so that one run reads one phase.
type reactorTrace struct {
	path string
	off  int64
}

// reactorBlocked is what one phase's file-system calls held the reactor.
type reactorBlocked struct {
	calls map[string][]time.Duration
	// slowest are the phase's longest calls, longest first.
	slowest []reactorCall
}

// reactorCall is one timed call.
type reactorCall struct {
	op, path string
	took     time.Duration
}

// mark starts a phase: the calls after it are the next since's.
func (r *reactorTrace) mark(t testing.TB) {
	fi, err := os.Stat(r.path)
	switch {
	case os.IsNotExist(err):
		r.off = 0
	case err != nil:
		t.Fatal(err)
	default:
		r.off = fi.Size()
	}
}

// since reads the calls made after the last mark.
func (r *reactorTrace) since(t testing.TB) reactorBlocked {
	f, err := os.Open(r.path)
	if err != nil {
		t.Fatalf("the Synapse trace: %v", err)
	}
	defer f.Close()
	if _, err := f.Seek(r.off, 0); err != nil {
		t.Fatal(err)
	}
	b := reactorBlocked{calls: map[string][]time.Duration{}}
	sc := bufio.NewScanner(f)
	var all []reactorCall
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), " ", 3)
		if len(f) != 3 {
			t.Fatalf("the Synapse trace: bad line %q", sc.Text())
		}
		n, err := strconv.Atoi(f[1])
		if err != nil {
			t.Fatalf("the Synapse trace: bad line %q", sc.Text())
		}
		c := reactorCall{op: f[0], path: f[2], took: time.Duration(n) * time.Microsecond}
		b.calls[c.op] = append(b.calls[c.op], c.took)
		all = append(all, c)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(all, func(x, y reactorCall) int { return cmp.Compare(y.took, x.took) })
	b.slowest = all[:min(len(all), 5)]
	return b
}

// total is the time every call held the reactor.
func (b reactorBlocked) total() time.Duration {
	var sum time.Duration
	for _, lat := range b.calls {
		for _, d := range lat {
			sum += d
		}
	}
	return sum
}

// per says, per download of n, what each kind of call held the reactor
// (its total over n, and its p50 and p99), and what share of the
// phase's wall time (took) the reactor stood in them.
func (b reactorBlocked) per(n int, took time.Duration) string {
	var parts []string
	for _, op := range []string{"exists", "open", "read", "close"} {
		lat := b.calls[op]
		if len(lat) == 0 {
			continue
		}
		var sum time.Duration
		for _, d := range lat {
			sum += d
		}
		parts = append(parts, fmt.Sprintf("%s %d × %v (p50 %v, p99 %v)", op, len(lat), (sum/time.Duration(n)).Round(10*time.Microsecond),
			percentile(lat, 50).Round(10*time.Microsecond), percentile(lat, 99).Round(10*time.Microsecond)))
	}
	return fmt.Sprintf("%v per download, %.0f%% of the wall time: %s", (b.total() / time.Duration(n)).Round(10*time.Microsecond),
		100*b.total().Seconds()/took.Seconds(), strings.Join(parts, "; "))
}

// slow lists the phase's slowest calls, each path under root, with the
// size size gives it (0: not known).
func (b reactorBlocked) slow(root string, size func(path string) int) string {
	var parts []string
	for _, c := range b.slowest {
		p := c.path
		if rel, err := filepath.Rel(root, p); err == nil {
			p = rel
		}
		parts = append(parts, fmt.Sprintf("%s %v %s (%d bytes)", c.op, c.took.Round(10*time.Microsecond), p, size(c.path)))
	}
	return strings.Join(parts, "; ")
}

// startTracedSynapse is startSynapse with its reactor's file-system
// calls timed (reactorTracePrelude).
func startTracedSynapse(t testing.TB, media, extra string) (*synapse, *reactorTrace) {
	tr := &reactorTrace{path: filepath.Join(t.TempDir(), "reactor.trace")}
	t.Setenv("S3MEDIAFS_SYNAPSE_TRACE", tr.path)
	return startSynapseWith(t, media, extra, synapseSetup{prelude: reactorTracePrelude}), tr
}
