package main

import (
	"bytes"
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
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/objstore"

	"github.com/dustin/go-humanize"
	"golang.org/x/sync/errgroup"
	"golang.org/x/term"

	"github.com/s3mediafs/s3mediafs/cache"
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
	// Conflicts are files whose key holds a different object: neither
	// uploaded (never overwritten silently) nor deleted.
	Conflicts int
	// Skipped are symlinks and other entries that are not regular files.
	Skipped              int
	Bytes, UploadedBytes int64
}

type localFile struct {
	rel  string
	size int64
}

// importTree uploads every regular file under o.from whose key the bucket
// does not hold. One LIST of the bucket replaces a HEAD per file, so a
// re-run after an interruption only sends what is missing: the import is
// resumable by running it again. A key that holds an object of another
// size is a conflict, reported and never overwritten; one of the same
// size is taken as this file's earlier upload, and checked byte for byte
// before any --delete-source.
//
// Files are read through an os.Root on o.from without following
// symlinks, so neither a symlink in the tree nor one swapped in later
// makes the import read or delete anything outside it (it runs as root).
func importTree(ctx context.Context, bucket objstore.Store, o importOptions) (importStats, error) {
	var st importStats
	root, err := os.OpenRoot(o.from)
	if err != nil {
		return st, err
	}
	defer root.Close()
	files, err := scanTree(o, &st)
	if err != nil {
		return st, err
	}
	st.Files = len(files)
	remote, err := listSizes(ctx, bucket)
	if err != nil {
		return st, err
	}
	var todo []localFile
	var todoBytes int64
	conflicts := map[string]bool{}
	for _, f := range files {
		size, ok := remote[f.rel]
		switch {
		case ok && size == f.size:
			st.Present++
			continue
		case ok:
			conflicts[f.rel] = true
			fmt.Fprintf(o.progress, "conflict: %s: the bucket holds another object there (%d bytes, the file has %d); not uploaded, not deleted\n", f.rel, size, f.size)
			continue
		}
		todo = append(todo, f)
		todoBytes += f.size
	}
	st.Conflicts = len(conflicts)
	fmt.Fprintf(o.progress, "%d files (%s) in %s; %d already in the bucket; %d conflicts; %d to upload (%s); skipped %d that are not regular files\n",
		st.Files, humanize.IBytes(uint64(st.Bytes)), o.from, st.Present, st.Conflicts, len(todo), humanize.IBytes(uint64(todoBytes)), st.Skipped)
	if o.dryRun {
		for _, f := range todo {
			fmt.Fprintf(o.progress, "would upload %s (%s)\n", f.rel, humanize.IBytes(uint64(f.size)))
		}
		return st, nil
	}
	firstErr := uploadAll(ctx, bucket, root, o, todo, todoBytes, &st)
	if err := ctx.Err(); err != nil {
		return st, err
	}
	if o.verify || o.deleteSource {
		if err := verifyImport(ctx, bucket, root, o, files, conflicts, &st); err != nil {
			return st, err
		}
	}
	if st.Conflicts > 0 {
		return st, fmt.Errorf("%d files conflict with other objects at their keys; they were neither uploaded nor deleted (see the conflict lines)", st.Conflicts)
	}
	if st.Failed > 0 {
		return st, fmt.Errorf("%d files failed; run the import again to retry them (first error: %w)", st.Failed, firstErr)
	}
	return st, nil
}

// scanTree lists the regular files under o.from, leaving out the trees
// kept local and counting what is not a regular file.
func scanTree(o importOptions, st *importStats) ([]localFile, error) {
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
			// WalkDir does not follow symlinks: a linked directory is not
			// entered, a linked file not read.
			st.Skipped++
			fmt.Fprintf(o.progress, "skipped (not a regular file): %s\n", rel)
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
		return nil, fmt.Errorf("scan %s: %w", o.from, err)
	}
	return files, nil
}

// uploadAll uploads the files, o.concurrency at a time; one that fails
// does not stop the rest. It returns the first failure.
func uploadAll(ctx context.Context, bucket objstore.Store, root *os.Root, o importOptions, todo []localFile, todoBytes int64, st *importStats) error {
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
			if err := uploadFile(gctx, bucket, root, f); err != nil {
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
	return firstErr
}

func uploadFile(ctx context.Context, bucket objstore.Store, root *os.Root, f localFile) error {
	fh, _, err := openSource(root, f)
	if err != nil {
		return err
	}
	defer fh.Close()
	// The file's owner, mode and time go with it, as the mount's own
	// uploads carry them.
	var meta map[string]string
	if fi, err := fh.Stat(); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			meta = cache.ObjectMeta(st.Uid, st.Gid, st.Mode&0o7777, fi.ModTime())
		}
	}
	return bucket.Put(ctx, f.rel, fh, f.size, meta)
}

// openSource opens the file f of the tree for reading without following a
// symlink anywhere on its path, and checks it is still the regular file
// of the size the scan saw.
func openSource(root *os.Root, f localFile) (*os.File, os.FileInfo, error) {
	fh, err := root.OpenFile(filepath.FromSlash(f.rel), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, nil, err
	}
	info, err := fh.Stat()
	switch {
	case err != nil:
	case !info.Mode().IsRegular():
		err = errors.New("no longer a regular file")
	case info.Size() != f.size:
		err = fmt.Errorf("changed while importing (%d bytes, now %d)", f.size, info.Size())
	}
	if err != nil {
		fh.Close()
		return nil, nil, err
	}
	return fh, info, nil
}

// listSizes returns every object's size by key, from one recursive LIST.
func listSizes(ctx context.Context, bucket objstore.Store) (map[string]int64, error) {
	sizes := map[string]int64{}
	err := bucket.List(ctx, "", true, func(e objstore.Entry) bool {
		sizes[e.Name] = e.Size
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("list the bucket: %w", err)
	}
	return sizes, nil
}

// verifyImport reads every local file's object back and compares it byte
// for byte with the file; with deleteSource it then removes each file so
// proven, if it is still the very file compared. A file whose key holds
// other bytes is a conflict, kept and reported.
func verifyImport(ctx context.Context, bucket objstore.Store, root *os.Root, o importOptions, files []localFile, conflicts map[string]bool, st *importStats) error {
	var missing []string
	for _, f := range files {
		if conflicts[f.rel] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		info, same, err := sameBytes(ctx, bucket, root, f)
		switch {
		case err != nil:
			missing = append(missing, f.rel)
			fmt.Fprintf(o.progress, "not verified: %s: %v\n", f.rel, err)
			continue
		case !same:
			conflicts[f.rel] = true
			st.Conflicts++
			fmt.Fprintf(o.progress, "conflict: %s: the bucket holds other bytes there; not deleted\n", f.rel)
			continue
		}
		st.Verified++
		if o.deleteSource {
			// Only the file compared goes: not one put in its place since.
			now, err := root.Lstat(filepath.FromSlash(f.rel))
			if err == nil && os.SameFile(now, info) && now.ModTime().Equal(info.ModTime()) && now.Size() == info.Size() {
				if err := root.Remove(filepath.FromSlash(f.rel)); err == nil {
					st.Removed++
				}
			}
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("verification: %d files could not be proven in the bucket (first: %s); nothing of them was deleted", len(missing), missing[0])
	}
	fmt.Fprintf(o.progress, "verified: %d files are in the bucket byte for byte\n", st.Verified)
	return nil
}

// sameBytes reads the object at f's key and the file f, and reports
// whether they hold the same bytes, with the file's identity as opened.
func sameBytes(ctx context.Context, bucket objstore.Store, root *os.Root, f localFile) (os.FileInfo, bool, error) {
	fh, info, err := openSource(root, f)
	if err != nil {
		return nil, false, err
	}
	defer fh.Close()
	body, err := bucket.Get(ctx, f.rel, 0, -1)
	if err != nil {
		return nil, false, err
	}
	defer body.Close()
	if body.Len != f.size {
		return info, false, nil
	}
	local, remote := make([]byte, 256<<10), make([]byte, 256<<10)
	for {
		ln, lerr := io.ReadFull(fh, local)
		rn, rerr := io.ReadFull(body, remote[:ln])
		if rerr != nil && !errors.Is(rerr, io.EOF) && !errors.Is(rerr, io.ErrUnexpectedEOF) {
			return nil, false, rerr
		}
		if rn != ln || !bytes.Equal(local[:ln], remote[:rn]) {
			return info, false, nil
		}
		if lerr != nil {
			if errors.Is(lerr, io.EOF) || errors.Is(lerr, io.ErrUnexpectedEOF) {
				return info, true, nil
			}
			return nil, false, lerr
		}
	}
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
	if err := refuseImportFromMount(o.from); err != nil {
		fmt.Fprintln(stderr, "s3mediafs import:", err)
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
	client, err := s3.New(ctx, s3ConfigOf(cfg), nil, log)
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

// refuseImportFromMount refuses to import from a FUSE mount (s3mediafs's
// own, most likely: importing it into itself copies nothing new). The old
// media directory may well be a mount point of another kind: a disk of its
// own, or a bind mount.
func refuseImportFromMount(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	fsType, err := topMountType(abs)
	if err != nil {
		return err
	}
	if strings.HasPrefix(fsType, "fuse") {
		return fmt.Errorf("%s is a %s mount; import reads the old media directory, not a mount", dir, fsType)
	}
	return nil
}
