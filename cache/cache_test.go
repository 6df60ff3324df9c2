// The cache's core contract over an in-memory store: background uploads and
// their retries, the newest write winning, unlinks and renames against
// uploads in flight, restarts that resume owed work, shared read-through,
// rmdir against the store, and a second Open of a cache in use.

package cache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/index"
	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

func openTest(t testing.TB, dir string, store objstore.Store, log *slog.Logger) *Cache {
	t.Helper()
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	c, err := Open(Options{Dir: dir, Store: store, Log: log, RetryMin: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	t.Cleanup(func() { c.Close() })
	return c
}

func drainTest(t *testing.T, c *Cache) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if n, err := c.Drain(ctx); err != nil {
		t.Fatalf("drain: %d owed: %v", n, err)
	}
}

// writeFile creates p (and its parent directories) through the cache API
// the way a close(2)-ing writer does, and returns once "close" returned.
func writeFile(t *testing.T, c *Cache, p string, data []byte) {
	t.Helper()
	ctx := context.Background()
	dir := ""
	parts := strings.Split(p, "/")
	for _, part := range parts[:len(parts)-1] {
		dir = index.JoinPath(dir, part)
		if _, err := c.Mkdir(ctx, dir, NewFile{Mode: 0o755}); err != nil && !errors.Is(err, ErrExist) {
			t.Fatal(err)
		}
	}
	h, _, err := c.Create(ctx, p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, NewFile{Mode: 0o644})
	if err != nil {
		t.Fatal(err)
	}
	writeClose(t, h, data)
}

// writeClose writes data at 0 and closes the handle as close(2) does.
func writeClose(t *testing.T, h *Handle, data []byte) {
	t.Helper()
	ctx := context.Background()
	if _, err := h.WriteAt(ctx, data, 0); err != nil {
		t.Fatal(err)
	}
	if err := h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// rewriteFile opens an existing file with O_TRUNC and writes data.
func rewriteFile(t *testing.T, c *Cache, p string, data []byte) {
	t.Helper()
	ctx := context.Background()
	h, err := c.OpenFile(ctx, p, os.O_WRONLY|os.O_TRUNC)
	if err != nil {
		t.Fatal(err)
	}
	writeClose(t, h, data)
}

func readFile(t *testing.T, c *Cache, p string) []byte {
	t.Helper()
	ctx := context.Background()
	a := lookupAll(t, c, p)
	h, err := c.OpenFile(ctx, p, os.O_RDONLY)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Release(ctx)
	buf := make([]byte, a.Size)
	n, err := h.ReadAt(ctx, buf, 0)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

// lookupAll stats every ancestor of p and then p, as the kernel does.
func lookupAll(t *testing.T, c *Cache, p string) Attr {
	t.Helper()
	var a Attr
	var err error
	cur := ""
	for _, part := range strings.Split(p, "/") {
		cur = index.JoinPath(cur, part)
		if a, err = c.Stat(context.Background(), cur); err != nil {
			t.Fatalf("lookup %q: %v", cur, err)
		}
	}
	return a
}

func wantObject(t *testing.T, mem *objstore.Mem, key string, want []byte) {
	t.Helper()
	got, ok := mem.Object(key)
	if !ok {
		t.Fatalf("object %q missing from the store", key)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("object %q: %d bytes %q…, want %d bytes %q…", key, len(got), head(got), len(want), head(want))
	}
}

func head(b []byte) []byte { return b[:min(len(b), 16)] }

func TestWriteUploadsInBackground(t *testing.T) {
	mem := objstore.NewMem()
	c := openTest(t, t.TempDir(), mem, nil)
	data := bytes.Repeat([]byte("media"), 10_000)
	writeFile(t, c, "local_content/ab/cd/file", data)
	a, err := c.Stat(context.Background(), "local_content/ab/cd/file")
	if err != nil || a.Size != int64(len(data)) {
		t.Fatalf("stat after close: %+v %v", a, err)
	}
	drainTest(t, c)
	wantObject(t, mem, "local_content/ab/cd/file", data)
	if a, _ := c.Stat(context.Background(), "local_content/ab/cd/file"); a.State != Clean {
		t.Fatalf("state after upload: %s", a.State)
	}
	if mem.Count("put") != 1 || mem.Count("head") != 0 {
		t.Fatalf("requests: %d PUT %d HEAD, want 1 PUT and no HEAD", mem.Count("put"), mem.Count("head"))
	}
}

func TestFirstPutFailsThenSucceeds(t *testing.T) {
	mem := objstore.NewMem()
	var calls atomic.Int32
	store := &objstore.Faulty{Store: mem, BeforePut: func(ctx context.Context, key string) error {
		if calls.Add(1) == 1 {
			return objstore.Unavailable("put", key)
		}
		return nil
	}}
	c := openTest(t, t.TempDir(), store, nil)
	writeFile(t, c, "f", []byte("hello"))
	drainTest(t, c)
	wantObject(t, mem, "f", []byte("hello"))
	if calls.Load() != 2 {
		t.Fatalf("PUT attempts: %d, want 2", calls.Load())
	}
}

// logCounter counts log records whose message contains a substring.
type logCounter struct {
	sub string
	n   atomic.Int32
}

func (l *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCounter) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, l.sub) {
		l.n.Add(1)
	}
	return nil
}
func (l *logCounter) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCounter) WithGroup(string) slog.Handler      { return l }

func TestPermanentErrorLoggedOnceAndHealed(t *testing.T) {
	mem := objstore.NewMem()
	var calls atomic.Int32
	store := &objstore.Faulty{Store: mem, BeforePut: func(ctx context.Context, key string) error {
		if calls.Add(1) <= 5 {
			return objstore.Denied("put", key)
		}
		return nil
	}}
	logs := &logCounter{sub: "store refused"}
	c := openTest(t, t.TempDir(), store, slog.New(logs))
	writeFile(t, c, "f", []byte("x"))
	drainTest(t, c)
	wantObject(t, mem, "f", []byte("x"))
	if logs.n.Load() != 1 {
		t.Fatalf("permanent error logged %d times, want once", logs.n.Load())
	}
}

// blockingPut makes the first PUT wait for release; with honourCtx false
// it ignores cancellation, like a request already on the wire.
type blockingPut struct {
	started  chan struct{}
	release  chan struct{}
	once     sync.Once
	first    atomic.Bool
	honourCt bool
}

func newBlockingPut(honourCtx bool) *blockingPut {
	return &blockingPut{started: make(chan struct{}), release: make(chan struct{}), honourCt: honourCtx}
}

func (b *blockingPut) hook(ctx context.Context, key string) error {
	if !b.first.CompareAndSwap(false, true) {
		return nil
	}
	b.once.Do(func() { close(b.started) })
	if b.honourCt {
		select {
		case <-b.release:
		case <-ctx.Done():
			return ctx.Err()
		}
		return nil
	}
	<-b.release
	return nil
}

func TestNewestWriteWinsOverSlowUpload(t *testing.T) {
	for _, honour := range []bool{true, false} {
		t.Run(map[bool]string{true: "cancelled", false: "completes-late"}[honour], func(t *testing.T) {
			mem := objstore.NewMem()
			bp := newBlockingPut(honour)
			c := openTest(t, t.TempDir(), &objstore.Faulty{Store: mem, BeforePut: bp.hook}, nil)
			writeFile(t, c, "f", []byte("version one"))
			<-bp.started
			rewriteFile(t, c, "f", []byte("version two, longer"))
			close(bp.release)
			drainTest(t, c)
			wantObject(t, mem, "f", []byte("version two, longer"))
			if got := readFile(t, c, "f"); string(got) != "version two, longer" {
				t.Fatalf("local read: %q", got)
			}
		})
	}
}

func TestUnlinkDuringUploadIsNotResurrected(t *testing.T) {
	for _, honour := range []bool{true, false} {
		t.Run(map[bool]string{true: "cancelled", false: "completes-late"}[honour], func(t *testing.T) {
			mem := objstore.NewMem()
			bp := newBlockingPut(honour)
			c := openTest(t, t.TempDir(), &objstore.Faulty{Store: mem, BeforePut: bp.hook}, nil)
			writeFile(t, c, "f", []byte("doomed"))
			<-bp.started
			if err := c.Unlink(context.Background(), "f"); err != nil {
				t.Fatal(err)
			}
			close(bp.release)
			drainTest(t, c)
			if _, ok := mem.Object("f"); ok {
				t.Fatal("unlinked file resurrected in the store by a late upload")
			}
			if _, err := c.Stat(context.Background(), "f"); !errors.Is(err, ErrNotExist) {
				t.Fatalf("stat after unlink: %v", err)
			}
		})
	}
}

func TestUnlinkThenRecreateKeepsNewObject(t *testing.T) {
	mem := objstore.NewMem()
	c := openTest(t, t.TempDir(), mem, nil)
	writeFile(t, c, "f", []byte("old"))
	drainTest(t, c)
	if err := c.Unlink(context.Background(), "f"); err != nil {
		t.Fatal(err)
	}
	writeFile(t, c, "f", []byte("new"))
	drainTest(t, c)
	wantObject(t, mem, "f", []byte("new"))
}

func TestUnlinkNeverSentCostsNoRequest(t *testing.T) {
	mem := objstore.NewMem()
	// Not started: no worker can try the upload before the unlink.
	c, err := Open(Options{Dir: t.TempDir(), Store: mem})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	writeFile(t, c, "f", []byte("x"))
	if err := c.Unlink(context.Background(), "f"); err != nil {
		t.Fatal(err)
	}
	c.Start()
	drainTest(t, c)
	if mem.Count("put")+mem.DeleteRequests() != 0 {
		t.Fatalf("requests for a file never sent: %d PUT, %d deletes", mem.Count("put"), mem.DeleteRequests())
	}
}

func TestUnlinkAfterFailedPutStillDeletes(t *testing.T) {
	// A PUT that failed may still have stored the object (a timeout after
	// the store wrote it), so the unlink must owe a delete.
	mem := objstore.NewMem()
	attempted := make(chan struct{}, 1)
	store := &objstore.Faulty{Store: mem, BeforePut: func(ctx context.Context, key string) error {
		mem.SetObject(key, []byte("landed anyway"))
		select {
		case attempted <- struct{}{}:
		default:
		}
		return objstore.Unavailable("put", key)
	}}
	c := openTest(t, t.TempDir(), store, nil)
	writeFile(t, c, "f", []byte("x"))
	<-attempted
	if err := c.Unlink(context.Background(), "f"); err != nil {
		t.Fatal(err)
	}
	drainTest(t, c)
	if _, ok := mem.Object("f"); ok {
		t.Fatal("object of a failed-then-unlinked upload left in the store")
	}
}

func TestRestartRequeuesDirtyAndTombstones(t *testing.T) {
	dir := t.TempDir()
	mem := objstore.NewMem()
	mem.SetObject("gone", []byte("to be deleted"))
	down := &objstore.Faulty{Store: mem,
		BeforePut:    func(ctx context.Context, key string) error { return objstore.Unavailable("put", key) },
		BeforeDelete: func(ctx context.Context, key string) error { return objstore.Unavailable("delete", key) },
	}
	c, err := Open(Options{Dir: dir, Store: down, RetryMin: time.Hour, RetryMax: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	writeFile(t, c, "a/pending", []byte("owed"))
	if _, err := c.Stat(context.Background(), "gone"); err != nil {
		t.Fatal(err)
	}
	if err := c.Unlink(context.Background(), "gone"); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := mem.Object("a/pending"); ok {
		t.Fatal("uploaded while the store was down")
	}

	c2 := openTest(t, dir, mem, nil)
	drainTest(t, c2)
	wantObject(t, mem, "a/pending", []byte("owed"))
	if _, ok := mem.Object("gone"); ok {
		t.Fatal("delete owed before the restart was not carried out")
	}
}

func TestReadThroughSharesOneGet(t *testing.T) {
	mem := objstore.NewMem()
	data := bytes.Repeat([]byte{7}, 1<<20)
	mem.SetObject("remote_content/srv/ab/cd/x", data)
	gate := make(chan struct{})
	store := &objstore.Faulty{Store: mem, BeforeGet: func(ctx context.Context, key string) error {
		<-gate
		return nil
	}}
	c := openTest(t, t.TempDir(), store, nil)
	var wg sync.WaitGroup
	results := make([][]byte, 8)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = readFile(t, c, "remote_content/srv/ab/cd/x")
		}()
	}
	time.Sleep(50 * time.Millisecond)
	close(gate)
	wg.Wait()
	for i, r := range results {
		if !bytes.Equal(r, data) {
			t.Fatalf("reader %d got %d bytes", i, len(r))
		}
	}
	if n := mem.Count("get"); n != 1 {
		t.Fatalf("GETs: %d, want 1 shared by all readers", n)
	}
}

// truncating cuts every GET body short.
func truncating(st objstore.Store) *objstore.Faulty {
	return &objstore.Faulty{Store: st, Body: func(_ string, body io.ReadCloser, size int64) io.ReadCloser {
		return io.NopCloser(io.LimitReader(body, size/2))
	}}
}

func TestTruncatedBodyIsNeverServed(t *testing.T) {
	mem := objstore.NewMem()
	mem.SetObject("x", bytes.Repeat([]byte{1}, 1000))
	c := openTest(t, t.TempDir(), truncating(mem), nil)
	ctx := context.Background()
	lookupAll(t, c, "x")
	h, err := c.OpenFile(ctx, "x", os.O_RDONLY)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Release(ctx)
	// Each attempt resumes where the last body ended, so three halvings
	// still leave the object incomplete: the read must fail, not return
	// short data.
	buf := make([]byte, 1000)
	if _, err := h.ReadAt(ctx, buf, 0); !errors.Is(err, ErrStore) {
		t.Fatalf("read of a truncated object: %v, want ErrStore", err)
	}
}

func TestRenameMovesObject(t *testing.T) {
	mem := objstore.NewMem()
	c := openTest(t, t.TempDir(), mem, nil)
	writeFile(t, c, "d/a", []byte("payload"))
	drainTest(t, c)
	if err := c.Rename(context.Background(), "d/a", "d/b"); err != nil {
		t.Fatal(err)
	}
	drainTest(t, c)
	wantObject(t, mem, "d/b", []byte("payload"))
	if _, ok := mem.Object("d/a"); ok {
		t.Fatal("old key still in the store after rename")
	}
}

func TestRmdirSeesStoreChildren(t *testing.T) {
	mem := objstore.NewMem()
	mem.SetObject("d/sub/x", []byte("1"))
	c := openTest(t, t.TempDir(), mem, nil)
	ctx := context.Background()
	if a, err := c.Stat(ctx, "d"); err != nil || !a.Dir {
		t.Fatalf("stat d: %+v %v", a, err)
	}
	if err := c.Rmdir(ctx, "d"); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("rmdir of a directory the store fills: %v", err)
	}
}

// Synapse's purge removes each media's directories as they empty. A
// directory this mount made holds no object it did not write (unless
// another host shares the bucket, and then the store keeps that host's
// files, shown again on the next lookup), so its rmdir asks the store
// nothing; nor does the rmdir of a directory just listed.
func TestRmdirAsksTheStoreOnlyWhatTheIndexCannotKnow(t *testing.T) {
	mem := objstore.NewMem()
	mem.SetObject("learned/x", []byte("1"))
	c := openTest(t, t.TempDir(), mem, nil)
	ctx := context.Background()
	writeFile(t, c, "made/here/media", []byte("payload"))
	drainTest(t, c)
	if err := c.Unlink(ctx, "made/here/media"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Stat(ctx, "learned"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Readdir(ctx, "learned"); err != nil {
		t.Fatal(err)
	}
	if err := c.Unlink(ctx, "learned/x"); err != nil {
		t.Fatal(err)
	}
	lists := mem.Count("list")
	for _, d := range []string{"made/here", "made", "learned"} {
		if err := c.Rmdir(ctx, d); err != nil {
			t.Fatalf("rmdir %s: %v", d, err)
		}
	}
	if n := mem.Count("list") - lists; n != 0 {
		t.Fatalf("%d LISTs for the rmdirs, want none", n)
	}
}

func TestBadPathsRejected(t *testing.T) {
	c := openTest(t, t.TempDir(), objstore.NewMem(), nil)
	ctx := context.Background()
	for _, p := range []string{"../x", "a/../b", "/abs", "a//b", "a/", "a\x00b", strings.Repeat("n", 1025)} {
		if _, _, err := c.Create(ctx, p, os.O_WRONLY, NewFile{Mode: 0o644}); err == nil {
			t.Errorf("create %q: accepted", p)
		}
	}
}

// staleList answers LIST from a snapshot taken before it waits for gate,
// like a store whose listing lags a delete that completes meanwhile.
type staleList struct {
	objstore.Store
	listed chan struct{}
	gate   chan struct{}
}

func (s *staleList) List(ctx context.Context, prefix string, recursive bool, fn func(objstore.Entry) bool) error {
	var snap []objstore.Entry
	err := s.Store.List(ctx, prefix, recursive, func(e objstore.Entry) bool {
		snap = append(snap, e)
		return true
	})
	if s.listed != nil {
		close(s.listed)
		s.listed = nil
		<-s.gate
	}
	for _, e := range snap {
		if !fn(e) {
			break
		}
	}
	return err
}

func TestRmdirWhileDeleteCompletes(t *testing.T) {
	mem := objstore.NewMem()
	st := &staleList{Store: mem}
	c := openTest(t, t.TempDir(), st, nil)
	writeFile(t, c, "d/x", []byte("x"))
	drainTest(t, c)
	st.listed, st.gate = make(chan struct{}), make(chan struct{})
	listed := st.listed
	if err := c.Unlink(context.Background(), "d/x"); err != nil {
		t.Fatal(err)
	}
	go func() {
		<-listed
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c.Drain(ctx) // the delete completes while the listing is in flight
		close(st.gate)
	}()
	if err := c.Rmdir(context.Background(), "d"); err != nil {
		t.Fatalf("rmdir after the only file was removed: %v", err)
	}
}

func TestDirectoryOverAnOwedDeleteStillDeletes(t *testing.T) {
	mem := objstore.NewMem()
	// Not started: the delete is still owed when the directory is made.
	c, err := Open(Options{Dir: t.TempDir(), Store: mem})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	mem.SetObject("a", []byte("old file"))
	ctx := context.Background()
	lookupAll(t, c, "a")
	if err := c.Unlink(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Mkdir(ctx, "a", NewFile{Mode: 0o755}); err != nil {
		t.Fatal(err)
	}
	c.Start()
	drainTest(t, c)
	if _, ok := mem.Object("a"); ok {
		t.Fatal("the removed file's object survived a directory made at its name")
	}
}

// A directory listing says what the store holds there as well as a HEAD
// per file would: the files it shows unchanged count as verified, so the
// attribute lookups of READDIRPLUS (ls -l, find) ask the store nothing.
func TestListingVerifiesItsFiles(t *testing.T) {
	mem := objstore.NewMem()
	for _, name := range []string{"a", "b", "c"} {
		mem.SetObject("d/"+name, []byte("media "+name))
	}
	c, err := Open(Options{Dir: t.TempDir(), Store: mem, RevalidateAfter: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	t.Cleanup(func() { c.Close() })
	ctx := context.Background()
	if _, err := c.Readdir(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Readdir(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // past RevalidateAfter
	if _, err := c.Readdir(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	// A LIST carries no user metadata: each file's owner, mode and time
	// cost one HEAD, once, and the listing's own verification none.
	for round, want := range []int{3, 0} {
		heads := mem.Count("head")
		for _, name := range []string{"a", "b", "c"} {
			if a, err := c.Stat(ctx, "d/"+name); err != nil || a.Size != int64(len("media a")) {
				t.Fatalf("stat %s: %+v %v", name, a, err)
			}
		}
		if n := mem.Count("head") - heads; n != want {
			t.Fatalf("round %d: %d HEADs for files the listing just showed, want %d (their metadata, once)", round, n, want)
		}
	}
}

// TestSecondOpenLeavesTheFirstAlone: a second daemon given the same
// cache_dir is refused by the index's lock before it touches anything
// of the first one's, such as a fetch's scratch file in tmp/.
func TestSecondOpenLeavesTheFirstAlone(t *testing.T) {
	dir := t.TempDir()
	c := openTest(t, dir, objstore.NewMem(), nil)
	scratch := filepath.Join(c.TempDir(), "fetch-in-flight")
	if err := os.WriteFile(scratch, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Options{Dir: dir, Store: objstore.NewMem()}); err == nil {
		t.Fatal("a second Open of a cache in use succeeded")
	}
	if _, err := os.Stat(scratch); err != nil {
		t.Fatalf("the refused Open removed the first cache's scratch file: %v", err)
	}
}

// TestCloseClosesUnlinkedOpenFiles: a file unlinked while open whose
// release never comes (the kernel drops it when the mount goes first)
// keeps no descriptor once the cache is closed; its data file is already
// gone from the directory, so such a descriptor would pin its space.
func TestCloseClosesUnlinkedOpenFiles(t *testing.T) {
	dir := t.TempDir()
	c, err := Open(Options{Dir: dir, Store: objstore.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	ctx := context.Background()
	writeFile(t, c, "f", []byte("bytes"))
	h, err := c.OpenFile(ctx, "f", os.O_RDWR)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteAt(ctx, []byte("more"), 5); err != nil {
		t.Fatal(err)
	}
	if err := c.Unlink(ctx, "f"); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, fd := range fds {
		if target, _ := os.Readlink("/proc/self/fd/" + fd.Name()); strings.HasPrefix(target, dir) {
			t.Errorf("descriptor %s still open on %s", fd.Name(), target)
		}
	}
}
