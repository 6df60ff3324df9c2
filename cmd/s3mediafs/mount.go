package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/s3mediafs/s3mediafs/cache"
	mediafs "github.com/s3mediafs/s3mediafs/fs"
	"github.com/s3mediafs/s3mediafs/s3"
)

// mountArgs is what the mount command's command line says.
type mountArgs struct {
	cfg        Config
	mountpoint string
	embedded   string // --embedded-s3 DIR
	debugFUSE  bool
	daemon     bool // detach once the mount serves
	readyFD    int  // report readiness to a waiting parent on this descriptor
	// files are the configuration files read (--config, --synapse-config),
	// checked for secrets others can read.
	files []string
}

// parseMountArgs reads the config file, then lets flags override it.
func parseMountArgs(args []string, stderr io.Writer) (*mountArgs, error) {
	fl := flag.NewFlagSet("mount", flag.ContinueOnError)
	fl.SetOutput(stderr)
	var (
		configPath  = fl.String("config", "", "YAML configuration `file`")
		synapsePath = fl.String("synapse-config", os.Getenv("SYNAPSE_CONFIG_PATH"),
			"Synapse's homeserver.yaml: media_store_path and the s3_storage_provider block (default $SYNAPSE_CONFIG_PATH)")
		m    = &mountArgs{}
		over Config
	)
	fl.StringVar(&m.embedded, "embedded-s3", "", "quickstart: serve an embedded S3 store keeping objects in `DIR` (not the cloud)")
	fl.BoolVar(&m.debugFUSE, "debug-fuse", false, "log every FUSE request")
	fl.BoolVar(&m.daemon, "daemon", false, "return once the mount serves and keep serving in the background")
	fl.IntVar(&m.readyFD, "ready-fd", 0, "write \"ok\" (or \"error: …\") on this `descriptor` once the mount serves, for supervisors and tests")
	handoffFrom := fl.Int("handoff-fd", 0, "(internal) read the resolved configuration from this descriptor")
	mountOpts := new(string)
	fl.Func("o", "mount options: key=value config keys, allow_other, and fstab options that are ignored (repeatable)", func(s string) error {
		*mountOpts = joinOpts(*mountOpts, s)
		return nil
	})
	overrideFlags(fl, &over)
	if err := fl.Parse(args); err != nil {
		return nil, err
	}
	if *handoffFrom > 0 {
		return m, m.readHandoff(*handoffFrom)
	}
	if fl.NArg() > 1 {
		return nil, errors.New("mount takes one MOUNTPOINT")
	}
	cfg, mediaStore, err := resolveConfig(*configPath, *synapsePath, *mountOpts)
	if err != nil {
		return nil, err
	}
	for _, f := range []string{*configPath, *synapsePath} {
		if f != "" {
			m.files = append(m.files, f)
		}
	}
	m.cfg, m.mountpoint = cfg, mediaStore
	if fl.NArg() == 1 {
		m.mountpoint = fl.Arg(0)
	}
	if m.mountpoint == "" {
		return nil, errors.New("mount needs a MOUNTPOINT (or --synapse-config with media_store_path)")
	}
	applyOverrides(fl, over, &m.cfg)
	if err := m.useEmbedded(); err != nil {
		return nil, err
	}
	return m, m.cfg.validate()
}

// overrideFlags declares the flags that override configuration keys.
func overrideFlags(fl *flag.FlagSet, over *Config) {
	fl.StringVar(&over.Bucket, "bucket", "", "bucket name")
	fl.StringVar(&over.Prefix, "prefix", "", "key prefix, used verbatim")
	fl.StringVar(&over.RegionName, "region", "", "region name")
	fl.StringVar(&over.EndpointURL, "endpoint-url", "", "S3-compatible endpoint URL")
	fl.BoolVar(&over.ForcePathStyle, "force-path-style", false, "use path-style bucket addressing")
	fl.StringVar(&over.CacheDir, "cache-dir", "", "cache directory (index and data)")
	fl.IntVar(&over.UploadConcurrency, "upload-concurrency", 0, "parallel uploads")
	fl.Func("cache-max-size", "bound on local data (e.g. 50GiB)", func(s string) error {
		v, err := parseBytes(s)
		over.CacheMaxSize = ByteSize(v)
		return err
	})
	fl.Func("cache-min-free", "free space to keep on the cache filesystem (e.g. 10GiB or 5%)", func(s string) error {
		v, err := parseFreeSpace(s)
		over.CacheMinFree = v
		return err
	})
	fl.DurationVar(&over.DrainTimeout, "drain-timeout", 0, "how long a stop waits for owed uploads")
	fl.StringVar(&over.LogLevel, "log-level", "", "debug, info, warn or error")
	fl.StringVar(&over.LogFormat, "log-format", "", "text or json")
}

// applyOverrides sets in cfg the keys whose flags were given.
func applyOverrides(fl *flag.FlagSet, over Config, cfg *Config) {
	fl.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "bucket":
			cfg.Bucket = over.Bucket
		case "prefix":
			cfg.Prefix = over.Prefix
		case "region":
			cfg.RegionName = over.RegionName
		case "endpoint-url":
			cfg.EndpointURL = over.EndpointURL
		case "force-path-style":
			cfg.ForcePathStyle = over.ForcePathStyle
		case "cache-dir":
			cfg.CacheDir = over.CacheDir
		case "upload-concurrency":
			cfg.UploadConcurrency = over.UploadConcurrency
		case "cache-max-size":
			cfg.CacheMaxSize = over.CacheMaxSize
		case "cache-min-free":
			cfg.CacheMinFree = over.CacheMinFree
		case "drain-timeout":
			cfg.DrainTimeout = over.DrainTimeout
		case "log-level":
			cfg.LogLevel = over.LogLevel
		case "log-format":
			cfg.LogFormat = over.LogFormat
		}
	})
}

// useEmbedded points the configuration at the embedded quickstart store.
func (m *mountArgs) useEmbedded() error {
	if m.embedded == "" {
		return nil
	}
	if m.cfg.EndpointURL != "" {
		return errors.New("--embedded-s3 and endpoint_url exclude each other")
	}
	if m.cfg.Bucket == "" {
		m.cfg.Bucket = embeddedBucket
	}
	m.cfg.AccessKeyID, m.cfg.SecretAccessKey, m.cfg.SessionToken = embeddedKey, embeddedSecret, ""
	m.cfg.ForcePathStyle = true
	m.cfg.EndpointURL = "http://embedded" // replaced once the server listens
	return nil
}

// readHandoff takes the mount a daemonizing parent resolved (see handoff).
func (m *mountArgs) readHandoff(fd int) error {
	f := os.NewFile(uintptr(fd), "handoff")
	defer f.Close()
	var h handoff
	if err := json.NewDecoder(f).Decode(&h); err != nil {
		return fmt.Errorf("read the configuration handed over: %w", err)
	}
	m.cfg, m.mountpoint, m.embedded, m.debugFUSE, m.files = h.Config, h.Mountpoint, h.Embedded, h.DebugFUSE, h.Files
	return m.cfg.validate()
}

func runMount(args []string, stderr io.Writer) int {
	m, err := parseMountArgs(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	ready := newReadyReporter(0)
	if m != nil {
		ready = newReadyReporter(m.readyFD)
	}
	if err != nil {
		ready.failed(err)
		fmt.Fprintln(stderr, "s3mediafs:", err)
		return exitUsage
	}
	if m.daemon {
		return daemonize(withoutFlag(args, "--daemon"), stderr)
	}
	logOut := stderr
	if m.cfg.LogFile != "" {
		os.MkdirAll(filepath.Dir(m.cfg.LogFile), 0o750)
		f, err := os.OpenFile(m.cfg.LogFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			ready.failed(err)
			fmt.Fprintln(stderr, "s3mediafs: log_file:", err)
			return exitUsage
		}
		defer f.Close()
		logOut = f
	}
	// A detached daemon outlives the terminal or pipe it was started
	// from: a closed stderr must not kill it.
	signal.Ignore(syscall.SIGPIPE)
	log := newLogger(logOut, m.cfg.LogLevel, m.cfg.LogFormat)
	for _, f := range exposedSecretFiles(m.files, m.cfg) {
		log.Warn("a configuration file holding a secret is readable by other users; chmod 600 it (or 640 with a trusted group)", "file", f)
	}
	if err := serve(m, log, ready); err != nil {
		ready.failed(err)
		log.Error("s3mediafs stopped", "err", err)
		return exitError
	}
	return exitOK
}

// withoutFlag drops a boolean flag from an argument list.
func withoutFlag(args []string, name string) []string {
	out := make([]string, 0, len(args))
	for _, a := range args {
		if a != name && a != "-"+strings.TrimLeft(name, "-") && a != name+"=true" {
			out = append(out, a)
		}
	}
	return out
}

// serve runs the daemon: store, cache, control socket, mount, then until
// a signal or an unmount from outside, then the drain.
func serve(m *mountArgs, log *slog.Logger, ready *readyReporter) error {
	// Signals are ours from the start: one that arrives just after
	// READY=1 must stop the daemon gracefully, not kill it.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	mnt, err := checkMountpoint(m.mountpoint, m.cfg.AllowNonEmptyMountpoint)
	if err != nil {
		return err
	}
	cfg := m.cfg
	ctx, stopBackground := context.WithCancel(context.Background())
	defer stopBackground()
	client, closeStore, err := openStore(ctx, cfg, m.embedded, log)
	if err != nil {
		return err
	}
	defer closeStore()
	met := newMetrics()
	c, err := openCache(cfg, client, met, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := c.Close(); err != nil {
			log.Error("closing the cache index failed", "err", err)
		}
	}()
	socket := cfg.ControlSocket
	if socket == "" {
		socket = socketFor(mnt)
	}
	control, closeControl, err := startControl(ctx, c, cfg, mnt, socket, log)
	if err != nil {
		return err
	}
	defer closeControl()
	server, ioMode, err := mountFS(mnt, c, cfg, met, m.debugFUSE, log)
	if err != nil {
		return err
	}
	control.setIOMode(ioMode)
	// Owed work is found from the index only now, with the mount serving.
	c.Start()
	if cfg.MetricsAddress != "" {
		addr, err := met.serve(ctx, cfg.MetricsAddress)
		if err != nil {
			log.Error("metrics endpoint could not start; serving without it", "addr", cfg.MetricsAddress, "err", err)
		} else {
			log.Info("metrics", "url", "http://"+addr+"/metrics")
		}
	}
	log.Info("mounted", "mountpoint", mnt, "bucket", cfg.Bucket, "prefix", cfg.Prefix, "cache_dir", cfg.CacheDir,
		"mode", control.info.Mode, "io_mode", ioMode, "control_socket", socket)
	ready.ready()
	notifyReady(ctx, c, log)
	runUntilSignal(ctx, mnt, server, c, sigs, cfg.DrainTimeout, log)
	return nil
}

// openStore connects to the bucket (or starts the embedded quickstart
// store) and checks it can be used. close stops what it started.
func openStore(ctx context.Context, cfg Config, embeddedDir string, log *slog.Logger) (_ *s3.Client, close func(), err error) {
	close = func() {}
	s3cfg := s3ConfigOf(cfg)
	if embeddedDir != "" {
		emb, err := startEmbeddedStore(embeddedDir, cfg.Bucket, log)
		if err != nil {
			return nil, close, err
		}
		close = func() { emb.Close() }
		defer func() {
			if err != nil {
				emb.Close()
			}
		}()
		log.Warn("EMBEDDED TEST STORE: objects are kept on THIS machine, NOT in the cloud; use a real bucket for real data",
			"objects_dir", embeddedDir, "socket", emb.Socket, "bucket", cfg.Bucket)
		s3cfg.UnixSocket = emb.Socket
	}
	client, err := s3.New(ctx, s3cfg, log)
	if err != nil {
		return nil, close, err
	}
	stopEmbedded := close
	close = func() { client.Close(); stopEmbedded() }
	checkCtx, cancel := context.WithTimeout(ctx, cfg.StoreTimeout)
	err = client.CheckBucket(checkCtx)
	cancel()
	if err != nil {
		return nil, close, fmt.Errorf("cannot use bucket %q: %w", cfg.Bucket, err)
	}
	return client, close, nil
}

// openCache opens the cache over the store, its requests timed by met,
// and gives the client the cache's multipart journal.
func openCache(cfg Config, client *s3.Client, met *metrics, log *slog.Logger) (*cache.Cache, error) {
	c, err := cache.Open(cache.Options{
		Dir: cfg.CacheDir, Store: instrumentedStore{Store: client, m: met}, Log: log,
		UploadConcurrency:  cfg.UploadConcurrency,
		NegativeTTL:        cfg.NegativeCacheTTL,
		RevalidateAfter:    cfg.RevalidateAfter,
		StoreTimeout:       cfg.StoreTimeout,
		LookupTimeout:      cfg.LookupTimeout,
		SkipObjectMeta:     cfg.ReadObjectMetadata != nil && !*cfg.ReadObjectMetadata,
		MaxKeyLen:          1024 - len(cfg.Prefix),
		MaxSize:            int64(cfg.CacheMaxSize),
		MinFree:            cfg.CacheMinFree.Bytes,
		MinFreePercent:     cfg.CacheMinFree.Percent,
		MaxAge:             cfg.CacheMaxAge,
		DirtyMax:           int64(cfg.DirtyMaxSize),
		SpaceWait:          cfg.SpaceWait,
		LocalOnly:          cfg.localOnly(),
		KeepDeletedInStore: !cfg.DeleteFromS3,
		Synchronous:        cfg.StoreSynchronous,
	})
	if err != nil {
		return nil, err
	}
	client.SetMultipartJournal(c)
	met.watch(c)
	return c, nil
}

// startControl serves status, flush and the cache's local files on the
// control socket. close stops it and removes the socket.
func startControl(ctx context.Context, c *cache.Cache, cfg Config, mnt, socket string, log *slog.Logger) (*controlServer, func(), error) {
	ctl, err := listenControl(socket)
	if err != nil {
		return nil, nil, err
	}
	mode := "write-back"
	if cfg.StoreSynchronous {
		mode = "synchronous"
	}
	control := &controlServer{c: c, started: time.Now(), log: log,
		info: daemonStatus{Mountpoint: mnt, Bucket: cfg.Bucket, Prefix: cfg.Prefix, Version: buildVersion(), Mode: mode}}
	ctlServer := &http.Server{Handler: control.handler(), ReadHeaderTimeout: 10 * time.Second}
	go ctlServer.Serve(ctl)
	go control.sample(ctx)
	return control, func() { ctlServer.Close(); os.Remove(socket) }, nil
}

// mountFS mounts the cache at mnt and says whether the kernel took
// passthrough ("passthrough") or the daemon serves every byte ("daemon").
func mountFS(mnt string, c *cache.Cache, cfg Config, met *metrics, debug bool, log *slog.Logger) (*mediafs.Server, string, error) {
	uid, gid, err := ownerOf(mnt)
	if err != nil {
		return nil, "", err
	}
	if cfg.UID != nil {
		uid = *cfg.UID
	}
	if cfg.GID != nil {
		gid = *cfg.GID
	}
	allowOther := os.Geteuid() == 0
	if cfg.AllowOther != nil {
		allowOther = *cfg.AllowOther
	}
	fileMode, dirMode := cfg.modes()
	server, err := mediafs.Mount(mnt, c, mediafs.MountOptions{
		Options: mediafs.Options{
			UID: uid, GID: gid, FileMode: fileMode, DirMode: dirMode, Log: log, Observe: met.observeFUSE,
			EntryTimeout: cfg.EntryTimeout, AttrTimeout: cfg.AttrTimeout, NegativeTimeout: min(cfg.EntryTimeout, cfg.NegativeCacheTTL),
			Passthrough: cfg.Passthrough, MountOwnsNewFiles: cfg.NewFileOwner == "mount",
		},
		AllowOther: allowOther,
		FsName:     "s3mediafs:" + cfg.Bucket,
		Debug:      debug,
	})
	if err != nil {
		return nil, "", err
	}
	ioMode := "daemon"
	if server.Passthrough {
		ioMode = "passthrough"
	} else if cfg.Passthrough {
		log.Warn("FUSE passthrough unavailable; reads and writes of cached files pass through the daemon", "reason", server.PassthroughOff)
	}
	return server, ioMode, nil
}

// runUntilSignal serves until SIGTERM/SIGINT (then unmounts as soon as no
// file is open) or an unmount from outside, then drains owed uploads for
// up to drainTimeout.
func runUntilSignal(ctx context.Context, mnt string, server *mediafs.Server, c *cache.Cache, sigs <-chan os.Signal, drainTimeout time.Duration, log *slog.Logger) {
	done := make(chan struct{})
	go func() { server.Wait(); close(done) }()
	select {
	case <-done:
		log.Info("unmounted from outside")
	case sig := <-sigs:
		log.Info("stopping", "signal", sig.String())
		notifyStopping(c)
		unmountWhenIdle(mnt, server, done, sigs, log)
	}
	drainCtx, cancelDrain := context.WithTimeout(ctx, drainTimeout)
	defer cancelDrain()
	if left, err := c.Drain(drainCtx); err != nil {
		log.Warn("stopping with uploads still owed; they resume at the next start", "owed", left)
	} else {
		log.Info("all uploads done")
	}
}

func unmountWhenIdle(mnt string, server interface{ Unmount() error }, done <-chan struct{}, sigs <-chan os.Signal, log *slog.Logger) {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	warned := false
	for {
		err := server.Unmount()
		if err == nil {
			<-done
			return
		}
		if !warned {
			log.Warn("mount busy; waiting for open files to close (send the signal again to detach now)", "err", err)
			warned = true
		}
		select {
		case <-done:
			return
		case <-sigs:
			log.Warn("detaching the mount lazily")
			if err := syscall.Unmount(mnt, syscall.MNT_DETACH); err != nil {
				log.Error("lazy unmount failed", "err", err)
			}
			<-done
			return
		case <-tick.C:
		}
	}
}

// checkMountpoint refuses a mount point that does not exist, is not a
// directory, already has something mounted on it, or (unless allowed)
// holds files the mount would hide.
func checkMountpoint(p string, allowNonEmpty bool) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("mount point: %w", err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("mount point %s is not a directory", abs)
	}
	// A bind mount or a disk of its own under the media store is fine (a
	// container gets its media store as a bind mount); a FUSE filesystem
	// on top means it is mounted already, by us or by another tool.
	fsType, err := topMountType(abs)
	if err != nil {
		return "", err
	}
	if strings.HasPrefix(fsType, "fuse") {
		return "", fmt.Errorf("mount point %s already has a filesystem mounted on it (%s)", abs, fsType)
	}
	if !allowNonEmpty {
		if err := refuseHiddenFiles(abs); err != nil {
			return "", err
		}
	}
	return abs, nil
}

// refuseHiddenFiles fails when the mount point holds files: mounted over,
// they would vanish from Synapse's view and it would answer 404 for them.
// Empty directories (Synapse makes its trees ahead of time) are fine.
func refuseHiddenFiles(dir string) error {
	const maxCount, maxTime = 1_000_000, 5 * time.Second
	var files, bytes int64
	deadline := time.Now().Add(maxTime)
	capped := false
	err := filepath.WalkDir(dir, func(p string, d iofs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		files++
		if info, err := d.Info(); err == nil && info.Mode().IsRegular() {
			bytes += info.Size()
		}
		if files >= maxCount || time.Now().After(deadline) {
			capped = true
			return filepath.SkipAll
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("mount point %s: %w", dir, err)
	}
	if files == 0 {
		return nil
	}
	count := fmt.Sprintf("%d files (%s)", files, humanize.IBytes(uint64(bytes)))
	if capped {
		count = "at least " + count
	}
	return fmt.Errorf("mount point %s holds %s that the mount would hide from Synapse: "+
		"run `s3mediafs import --from %s` (with this configuration) to move them to S3 first, "+
		"or set allow_non_empty_mountpoint: true (-o nonempty) to mount over them anyway", dir, count, dir)
}

// topMountType returns the type of the filesystem on top at p ("" when
// nothing is mounted there).
func topMountType(p string) (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	return mountTypeAt(f, p)
}

// mountTypeAt reads a mountinfo table and returns the type of the last
// mount at p: later lines are mounted over earlier ones.
func mountTypeAt(mountinfo io.Reader, p string) (string, error) {
	sc := bufio.NewScanner(mountinfo)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	fsType := ""
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || unescapeMountinfo(fields[4]) != p {
			continue
		}
		// Optional fields end at "-"; the type follows it.
		if sep := slices.Index(fields[5:], "-"); sep >= 0 && 5+sep+1 < len(fields) {
			fsType = fields[5+sep+1]
		}
	}
	return fsType, sc.Err()
}

// unescapeMountinfo undoes the octal escapes (\040 for space…) of mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// ownerOf returns the owner of the mount point, which files of the mount
// take by default so that Synapse (which owns its media directory) can write.
func ownerOf(p string) (uint32, uint32, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		return 0, 0, fmt.Errorf("mount point: %w", err)
	}
	return st.Uid, st.Gid, nil
}
