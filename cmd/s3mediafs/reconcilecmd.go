package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
	"golang.org/x/term"

	"github.com/s3mediafs/s3mediafs/cache"
	"github.com/s3mediafs/s3mediafs/cmd/s3mediafs/reconcile"
	"github.com/s3mediafs/s3mediafs/s3"
)

// reconcileFlags are the reconcile command's flags.
type reconcileFlags struct {
	synapsePath, configPath, database, socket, deletedLog, tempDir string
	asJSON, deleteOrphans, noCache                                 bool
	minAge                                                         time.Duration
	price                                                          float64
	concurrency                                                    int
}

func parseReconcileFlags(args []string, stderr io.Writer) (reconcileFlags, error) {
	var f reconcileFlags
	fl := flag.NewFlagSet("reconcile", flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.StringVar(&f.synapsePath, "synapse-config", os.Getenv("SYNAPSE_CONFIG_PATH"), "Synapse's homeserver.yaml: its database and media_store_path")
	fl.StringVar(&f.configPath, "config", "", "s3mediafs configuration `file` (the bucket); default: the provider block of homeserver.yaml")
	fl.StringVar(&f.database, "database", "", "override the database: a postgres:// URL or libpq key=value string, or a SQLite file")
	fl.StringVar(&f.socket, "socket", "", "the running daemon's control socket (default: control_socket, or derived from media_store_path)")
	fl.BoolVar(&f.noCache, "no-cache", false, "do not consult the local cache (files not yet uploaded are then reported missing)")
	fl.BoolVar(&f.asJSON, "json", false, "print one JSON object")
	fl.BoolVar(&f.deleteOrphans, "delete-orphans", false, "delete the orphans (default: a dry run that only reports)")
	fl.DurationVar(&f.minAge, "min-age", 24*time.Hour, "spare objects modified more recently than this")
	fl.StringVar(&f.deletedLog, "deleted-log", "", "append every deleted key to this `file` (default: reconcile-deleted.tsv in cache_dir)")
	fl.Float64Var(&f.price, "price-per-gb-month", 0.023, "storage price, for the cost line (AWS S3 Standard: 0.023 USD)")
	fl.IntVar(&f.concurrency, "concurrency", 4, "delete batches in flight")
	fl.StringVar(&f.tempDir, "temp-dir", os.TempDir(), "where the sorted key runs go (a few hundred bytes per object)")
	if err := fl.Parse(args); err != nil {
		return f, err
	}
	if fl.NArg() > 0 {
		return f, fmt.Errorf("unexpected argument %q", fl.Arg(0))
	}
	if f.synapsePath == "" && f.database == "" {
		return f, errors.New("--synapse-config homeserver.yaml (or --database) is required")
	}
	if f.minAge < 0 || f.concurrency < 1 || f.price < 0 {
		return f, errors.New("--min-age, --concurrency and --price-per-gb-month must not be negative")
	}
	return f, nil
}

func runReconcile(args []string, stdout, stderr io.Writer) int {
	f, err := parseReconcileFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintln(stderr, "s3mediafs reconcile:", err)
		return exitUsage
	}
	cfg, mediaStore, db, err := reconcileConfig(&f)
	if err != nil {
		fmt.Fprintln(stderr, "s3mediafs reconcile:", err)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log := newLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	rep, err := reconcileRun(ctx, f, cfg, mediaStore, db, log, stderr)
	if rep != nil {
		printReconcile(stdout, f, cfg, rep)
	}
	if err != nil {
		fmt.Fprintln(stderr, "s3mediafs reconcile:", err)
		return exitError
	}
	return exitOK
}

// reconcileConfig finds the bucket, the media store and the database,
// loading the configuration as mount does: the provider block of
// homeserver.yaml (a homeserver still on synapse-s3-storage-provider),
// then --config over it.
func reconcileConfig(f *reconcileFlags) (Config, string, reconcile.Database, error) {
	cfg, mediaStore, err := resolveConfig(f.configPath, f.synapsePath, "")
	if err != nil && f.configPath == "" {
		err = fmt.Errorf("%w; name s3mediafs's configuration with --config", err)
	}
	if err == nil {
		err = cfg.validate()
	}
	if err != nil {
		return cfg, "", reconcile.Database{}, err
	}
	var db reconcile.Database
	if f.deletedLog == "" {
		f.deletedLog = filepath.Join(cfg.CacheDir, "reconcile-deleted.tsv")
	}
	if f.database != "" {
		db = reconcile.DatabaseFromFlag(f.database)
	} else {
		db, err = reconcile.DatabaseFromHomeserver(f.synapsePath)
	}
	return cfg, mediaStore, db, err
}

func reconcileRun(ctx context.Context, f reconcileFlags, cfg Config, mediaStore string, dbc reconcile.Database, log *slog.Logger, stderr io.Writer) (*reconcile.Report, error) {
	db, err := reconcile.Open(ctx, dbc)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	client, err := s3.New(ctx, s3ConfigOf(cfg), nil, log)
	if err != nil {
		return nil, err
	}
	o := reconcile.Options{DB: db, Bucket: client, TempDir: f.tempDir, MinAge: f.minAge,
		Delete: f.deleteOrphans, Concurrency: f.concurrency, Progress: &reconcile.Progress{}, KeyPrefix: cfg.Prefix}
	if !f.noCache {
		o.Local = localFilesOf(f, cfg, mediaStore)
	}
	if f.deleteOrphans {
		if err := os.MkdirAll(filepath.Dir(f.deletedLog), 0o700); err != nil {
			return nil, fmt.Errorf("deleted-keys log: %w", err)
		}
		o.DeletedLog, err = os.OpenFile(f.deletedLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("deleted-keys log: %w", err)
		}
		defer o.DeletedLog.Close()
	}
	if t, ok := stderr.(*os.File); ok && term.IsTerminal(int(t.Fd())) {
		done := make(chan struct{})
		defer close(done)
		go showProgress(t, o.Progress, done)
	}
	return reconcile.Run(ctx, o)
}

// localFilesOf reads the files only the cache holds: from the running
// daemon if there is one (it holds the index open), else from the index
// itself, read-only.
func localFilesOf(f reconcileFlags, cfg Config, mediaStore string) reconcile.LocalFiles {
	socket := f.socket
	if socket == "" {
		socket = cfg.ControlSocket
	}
	if socket == "" && mediaStore != "" {
		socket = socketFor(mediaStore)
	}
	return func(fn func(string, int64) error) error {
		if socket != "" {
			if _, err := os.Stat(socket); err == nil {
				return daemonLocalFiles(socket, fn)
			}
		}
		return cache.ReadNotInStore(cfg.CacheDir, slog.New(slog.NewTextHandler(io.Discard, nil)), fn)
	}
}

// showProgress redraws one status line on the terminal until done.
func showProgress(w io.Writer, p *reconcile.Progress, done <-chan struct{}) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-done:
			fmt.Fprint(w, "\r\033[K")
			return
		case <-t.C:
			phase, _ := p.Phase.Load().(string)
			fmt.Fprintf(w, "\r\033[K%s: %s rows, %s objects, %s cached files, %s deleted", phase,
				humanize.Comma(p.Rows.Load()), humanize.Comma(p.Objects.Load()),
				humanize.Comma(p.LocalFiles.Load()), humanize.Comma(p.Deleted.Load()))
		}
	}
}

// reconcileOutput is the --json answer: the report and the cost line.
type reconcileOutput struct {
	*reconcile.Report
	Bucket          string  `json:"bucket"`
	Prefix          string  `json:"prefix"`
	MinAge          string  `json:"min_age"`
	PricePerGBMonth float64 `json:"price_per_gb_month"`
	OrphansPerMonth float64 `json:"orphans_cost_per_month"`
	DeletedLog      string  `json:"deleted_log,omitempty"`
}

func printReconcile(w io.Writer, f reconcileFlags, cfg Config, rep *reconcile.Report) {
	cost := float64(rep.Orphans.Bytes) / 1e9 * f.price
	if f.asJSON {
		out := reconcileOutput{Report: rep, Bucket: cfg.Bucket, Prefix: cfg.Prefix, MinAge: f.minAge.String(),
			PricePerGBMonth: f.price, OrphansPerMonth: cost}
		if f.deleteOrphans {
			out.DeletedLog = f.deletedLog
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(out)
		return
	}
	b := func(n int64) string { return humanize.IBytes(uint64(max(n, 0))) }
	r := rep.Rows
	fmt.Fprintf(w, "bucket %s, prefix %q\n", cfg.Bucket, cfg.Prefix)
	fmt.Fprintf(w, "  database:   %d local media (%d URL previews, %d uploads pending), %d local thumbnails, %d remote media, %d remote thumbnails",
		r.Local, r.URLCache, r.Pending, r.LocalThumbnails, r.Remote, r.RemoteThumbnails)
	if r.Unmappable > 0 {
		fmt.Fprintf(w, "; %d rows with no valid path", r.Unmappable)
	}
	fmt.Fprintf(w, "\n  matched:    %d objects (%s) in S3 and in the database\n", rep.Matched.Count, b(rep.Matched.Bytes))
	fmt.Fprintf(w, "  orphans:    %d objects (%s) no row accounts for, older than %s: $%.2f a month at $%g per GB-month\n",
		rep.Orphans.Count, b(rep.Orphans.Bytes), f.minAge, cost, f.price)
	for _, tree := range reconcile.Trees {
		if t, ok := rep.OrphansByTree[tree]; ok {
			fmt.Fprintf(w, "              %-22s %10d  %s\n", tree, t.Count, b(t.Bytes))
		}
	}
	if rep.InGrace.Count > 0 {
		fmt.Fprintf(w, "  in grace:   %d objects (%s) without a row but younger than %s: kept\n", rep.InGrace.Count, b(rep.InGrace.Bytes), f.minAge)
	}
	fmt.Fprintf(w, "  missing:    %d rows whose file is neither in S3 nor in the local cache\n", rep.Missing.Count)
	for _, k := range rep.MissingKeys {
		fmt.Fprintf(w, "              %s\n", k)
	}
	if extra := rep.Missing.Count - int64(len(rep.MissingKeys)); extra > 0 {
		fmt.Fprintf(w, "              … and %d more (--json lists the first %d too)\n", extra, len(rep.MissingKeys))
	}
	fmt.Fprintf(w, "  local only: %d files (%s) in the local cache, not in S3 yet\n", rep.LocalOnly.Count, b(rep.LocalOnly.Bytes))
	if rep.Foreign.Count > 0 {
		fmt.Fprintf(w, "  elsewhere:  %d objects (%s) outside Synapse's trees (%s): not Synapse's, never deleted\n",
			rep.Foreign.Count, b(rep.Foreign.Bytes), strings.Join(reconcile.Trees, ", "))
	}
	if rep.DryRun {
		fmt.Fprintln(w, "dry run: nothing deleted. Review the above, then run again with --delete-orphans.")
		return
	}
	fmt.Fprintf(w, "deleted:    %d orphans (%s), logged in %s; kept %d that gained a row and %d rewritten since the listing; %d failed\n",
		rep.Deleted.Count, b(rep.Deleted.Bytes), f.deletedLog, rep.KeptOwned, rep.KeptChanged, rep.DeleteFailed)
}
