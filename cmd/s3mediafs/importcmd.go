package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/sync/errgroup"
	"golang.org/x/term"

	"github.com/s3mediafs/s3mediafs/s3"
)

// importOptions says what an import does.
type importOptions struct {
	from         string
	concurrency  int
	dryRun       bool
	verify       bool
	deleteSource bool
	localOnly    func(string) bool
	progress     io.Writer // where progress goes
	tty          bool      // progress as a bar (a terminal) or as periodic lines
}

// importStats are an import's results.
type importStats struct {
	Files, Present, Uploaded, Failed, Verified, Removed int
	Bytes, UploadedBytes                                int64
}

type localFile struct {
	rel  string
	size int64
}

// importTree uploads every regular file under o.from that the bucket does
// not already hold with the same size. One LIST of the bucket replaces a
// HEAD per file, so a re-run after an interruption only sends what is
// missing: the import is resumable by running it again.
func importTree(ctx context.Context, store s3.Store, o importOptions) (importStats, error) {
	var st importStats
	var files []localFile
	err := filepath.WalkDir(o.from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(o.from, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel != "." && o.localOnly != nil && o.localOnly(rel) {
				return filepath.SkipDir // url_cache and friends stay local
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		files = append(files, localFile{rel, info.Size()})
		st.Bytes += info.Size()
		return nil
	})
	if err != nil {
		return st, fmt.Errorf("scan %s: %w", o.from, err)
	}
	st.Files = len(files)
	remote, err := listSizes(ctx, store)
	if err != nil {
		return st, err
	}
	var todo []localFile
	var todoBytes int64
	for _, f := range files {
		if size, ok := remote[f.rel]; ok && size == f.size {
			st.Present++
			continue
		}
		todo = append(todo, f)
		todoBytes += f.size
	}
	fmt.Fprintf(o.progress, "%d files (%s) in %s; %d already in the bucket; %d to upload (%s)\n",
		st.Files, humanize.IBytes(uint64(st.Bytes)), o.from, st.Present, len(todo), humanize.IBytes(uint64(todoBytes)))
	if o.dryRun {
		for _, f := range todo {
			fmt.Fprintf(o.progress, "would upload %s (%s)\n", f.rel, humanize.IBytes(uint64(f.size)))
		}
		return st, nil
	}

	prog := newProgress(o, todoBytes, len(todo))
	var uploaded, failed atomic.Int64
	var upBytes atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.concurrency)
	var errMu sync.Mutex
	var firstErr error
	for _, f := range todo {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			if err := uploadFile(gctx, store, filepath.Join(o.from, filepath.FromSlash(f.rel)), f); err != nil {
				failed.Add(1)
				errMu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				errMu.Unlock()
				fmt.Fprintf(o.progress, "failed: %s: %v\n", f.rel, err)
				return nil // one bad file does not stop the rest
			}
			uploaded.Add(1)
			upBytes.Add(f.size)
			prog.add(f.size)
			return nil
		})
	}
	g.Wait()
	prog.done()
	st.Uploaded, st.Failed, st.UploadedBytes = int(uploaded.Load()), int(failed.Load()), upBytes.Load()
	if err := ctx.Err(); err != nil {
		return st, err
	}
	if o.verify || o.deleteSource {
		if err := verifyImport(ctx, store, o, files, &st); err != nil {
			return st, err
		}
	}
	if st.Failed > 0 {
		return st, fmt.Errorf("%d files failed; run the import again to retry them (first error: %w)", st.Failed, firstErr)
	}
	return st, nil
}

func uploadFile(ctx context.Context, store s3.Store, path string, f localFile) error {
	fh, err := os.Open(path)
	if err != nil {
		return err
	}
	defer fh.Close()
	info, err := fh.Stat()
	if err != nil {
		return err
	}
	if info.Size() != f.size {
		return fmt.Errorf("changed while importing (%d bytes, now %d)", f.size, info.Size())
	}
	return store.Put(ctx, f.rel, fh, f.size)
}

// listSizes returns every object's size by key, from one recursive LIST.
func listSizes(ctx context.Context, store s3.Store) (map[string]int64, error) {
	sizes := map[string]int64{}
	err := store.List(ctx, "", true, func(name string, size int64, _ time.Time, _ bool) bool {
		sizes[name] = size
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("list the bucket: %w", err)
	}
	return sizes, nil
}

// verifyImport lists the bucket again and checks every local file is there
// with its size; with deleteSource it then removes the verified files.
func verifyImport(ctx context.Context, store s3.Store, o importOptions, files []localFile, st *importStats) error {
	remote, err := listSizes(ctx, store)
	if err != nil {
		return err
	}
	var missing []string
	for _, f := range files {
		if size, ok := remote[f.rel]; !ok || size != f.size {
			missing = append(missing, f.rel)
			continue
		}
		st.Verified++
		if o.deleteSource {
			if err := os.Remove(filepath.Join(o.from, filepath.FromSlash(f.rel))); err == nil {
				st.Removed++
			}
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("verification: %d files are not in the bucket with their size (first: %s); nothing of them was deleted", len(missing), missing[0])
	}
	fmt.Fprintf(o.progress, "verified: all %d files are in the bucket with their sizes\n", st.Verified)
	return nil
}

// progress shows an import's progress: a bar with rate and ETA on a
// terminal, a plain line every 10 s otherwise.
type progress struct {
	bar   *progressbar.ProgressBar
	w     io.Writer
	total int64
	files int
	done_ atomic.Int64
	count atomic.Int64
	stop  chan struct{}
	wg    sync.WaitGroup
	start time.Time
}

func newProgress(o importOptions, total int64, files int) *progress {
	p := &progress{w: o.progress, total: total, files: files, stop: make(chan struct{}), start: time.Now()}
	if o.tty {
		p.bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(o.progress),
			progressbar.OptionShowBytes(true), progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetDescription("uploading"), progressbar.OptionThrottle(200*time.Millisecond))
		return p
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.line()
			}
		}
	}()
	return p
}

func (p *progress) add(n int64) {
	p.done_.Add(n)
	p.count.Add(1)
	if p.bar != nil {
		p.bar.Add64(n)
	}
}

func (p *progress) line() {
	done := p.done_.Load()
	rate := float64(done) / time.Since(p.start).Seconds()
	eta := "?"
	if rate > 0 {
		eta = time.Duration(float64(p.total-done) / rate * float64(time.Second)).Round(time.Second).String()
	}
	fmt.Fprintf(p.w, "uploaded %d/%d files, %s of %s, %s/s, ETA %s\n", p.count.Load(), p.files,
		humanize.IBytes(uint64(done)), humanize.IBytes(uint64(p.total)), humanize.IBytes(uint64(rate)), eta)
}

func (p *progress) done() {
	if p.bar != nil {
		p.bar.Finish()
		fmt.Fprintln(p.w)
		return
	}
	close(p.stop)
	p.wg.Wait()
	p.line()
}

func runImport(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("import", flag.ContinueOnError)
	fl.SetOutput(stderr)
	configPath := fl.String("config", "", "YAML configuration `file` (the bucket)")
	synapsePath := fl.String("synapse-config", os.Getenv("SYNAPSE_CONFIG_PATH"), "Synapse's homeserver.yaml")
	mountOpts := fl.String("o", "", "config keys as key=value,…")
	from := fl.String("from", "", "the media store `directory` to upload (default: media_store_path)")
	o := importOptions{progress: stdout}
	fl.IntVar(&o.concurrency, "concurrency", 0, "parallel uploads (default: upload_concurrency)")
	fl.BoolVar(&o.dryRun, "dry-run", false, "say what would be uploaded, upload nothing")
	fl.BoolVar(&o.verify, "verify", false, "list the bucket again afterwards and check every file is there")
	fl.BoolVar(&o.deleteSource, "delete-source", false, "after a successful verification, delete the local files (never by default)")
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	cfg, mediaStore, err := resolveConfig(*configPath, *synapsePath, *mountOpts)
	if err == nil {
		err = cfg.validate()
	}
	if err != nil {
		fmt.Fprintln(stderr, "s3mediafs import:", err)
		return exitUsage
	}
	o.from = *from
	if o.from == "" {
		o.from = mediaStore
	}
	if o.from == "" {
		fmt.Fprintln(stderr, "s3mediafs import: --from DIR is required")
		return exitUsage
	}
	if fi, err := os.Stat(o.from); err != nil || !fi.IsDir() {
		fmt.Fprintf(stderr, "s3mediafs import: %s is not a directory\n", o.from)
		return exitUsage
	}
	if mounted, _ := isMountpoint(o.from); mounted {
		fmt.Fprintf(stderr, "s3mediafs import: %s is a mount point; import reads the old media directory, not a mount\n", o.from)
		return exitUsage
	}
	if o.concurrency <= 0 {
		o.concurrency = cfg.UploadConcurrency
	}
	o.localOnly = cfg.localOnly()
	if f, ok := stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		o.tty = true
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log := newLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	client, err := s3.New(ctx, s3ConfigOf(cfg), log)
	if err != nil {
		fmt.Fprintln(stderr, "s3mediafs import:", err)
		return exitUsage
	}
	start := time.Now()
	st, err := importTree(ctx, client, o)
	fmt.Fprintf(stdout, "import: %d files, %d already there, %d uploaded (%s), %d failed, in %s\n",
		st.Files, st.Present, st.Uploaded, humanize.IBytes(uint64(st.UploadedBytes)), st.Failed, time.Since(start).Round(time.Millisecond))
	if st.Removed > 0 {
		fmt.Fprintf(stdout, "import: removed %d verified source files\n", st.Removed)
	}
	if err != nil {
		fmt.Fprintln(stderr, "s3mediafs import:", err)
		return exitError
	}
	return exitOK
}
