package main

import (
	"bufio"
	"context"
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
}

// parseMountArgs reads the config file, then lets flags override it.
func parseMountArgs(args []string, stderr io.Writer) (*mountArgs, error) {
	fl := flag.NewFlagSet("mount", flag.ContinueOnError)
	fl.SetOutput(stderr)
	var (
		configPath  = fl.String("config", "", "YAML configuration `file`")
		synapsePath = fl.String("synapse-config", os.Getenv("SYNAPSE_CONFIG_PATH"),
			"Synapse's homeserver.yaml: media_store_path and the s3_storage_provider block (default $SYNAPSE_CONFIG_PATH)")
		m    = &mountArgs{cfg: defaultConfig()}
		over Config
	)
	fl.StringVar(&m.embedded, "embedded-s3", "", "quickstart: serve an embedded S3 store keeping objects in `DIR` (not the cloud)")
	fl.BoolVar(&m.debugFUSE, "debug-fuse", false, "log every FUSE request")
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
	if err := fl.Parse(args); err != nil {
		return nil, err
	}
	if fl.NArg() > 1 {
		return nil, errors.New("mount takes one MOUNTPOINT")
	}
	if *synapsePath != "" {
		mediaStore, err := loadSynapseConfig(*synapsePath, &m.cfg)
		if err != nil {
			return nil, err
		}
		m.mountpoint = mediaStore
	}
	if fl.NArg() == 1 {
		m.mountpoint = fl.Arg(0)
	}
	if m.mountpoint == "" {
		return nil, errors.New("mount needs a MOUNTPOINT (or --synapse-config with media_store_path)")
	}
	if *configPath != "" {
		if err := loadConfigFile(*configPath, &m.cfg); err != nil {
			return nil, err
		}
	}
	fl.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "bucket":
			m.cfg.Bucket = over.Bucket
		case "prefix":
			m.cfg.Prefix = over.Prefix
		case "region":
			m.cfg.RegionName = over.RegionName
		case "endpoint-url":
			m.cfg.EndpointURL = over.EndpointURL
		case "force-path-style":
			m.cfg.ForcePathStyle = over.ForcePathStyle
		case "cache-dir":
			m.cfg.CacheDir = over.CacheDir
		case "upload-concurrency":
			m.cfg.UploadConcurrency = over.UploadConcurrency
		case "cache-max-size":
			m.cfg.CacheMaxSize = over.CacheMaxSize
		case "cache-min-free":
			m.cfg.CacheMinFree = over.CacheMinFree
		case "drain-timeout":
			m.cfg.DrainTimeout = over.DrainTimeout
		case "log-level":
			m.cfg.LogLevel = over.LogLevel
		case "log-format":
			m.cfg.LogFormat = over.LogFormat
		}
	})
	if m.embedded != "" {
		if m.cfg.EndpointURL != "" {
			return nil, errors.New("--embedded-s3 and endpoint_url exclude each other")
		}
		if m.cfg.Bucket == "" {
			m.cfg.Bucket = embeddedBucket
		}
		m.cfg.AccessKeyID, m.cfg.SecretAccessKey, m.cfg.SessionToken = embeddedKey, embeddedSecret, ""
		m.cfg.ForcePathStyle = true
		m.cfg.EndpointURL = "http://embedded" // replaced once the server listens
	}
	return m, m.cfg.validate()
}

func runMount(args []string, stderr io.Writer) int {
	m, err := parseMountArgs(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintln(stderr, "s3mediafs:", err)
		return exitUsage
	}
	log := newLogger(stderr, m.cfg.LogLevel, m.cfg.LogFormat)
	if err := serve(m, log); err != nil {
		log.Error("s3mediafs stopped", "err", err)
		return exitError
	}
	return exitOK
}

// serve mounts, serves until a signal or an external unmount, then drains.
func serve(m *mountArgs, log *slog.Logger) error {
	mnt, err := checkMountpoint(m.mountpoint)
	if err != nil {
		return err
	}
	cfg := m.cfg
	if m.embedded != "" {
		emb, err := startEmbeddedStore(m.embedded, cfg.Bucket, log)
		if err != nil {
			return err
		}
		defer emb.Close()
		cfg.EndpointURL = emb.URL
		log.Warn("EMBEDDED TEST STORE: objects are kept on THIS machine, NOT in the cloud; use a real bucket for real data",
			"objects_dir", m.embedded, "endpoint", emb.URL, "bucket", cfg.Bucket)
	}

	ctx := context.Background()
	store, err := s3.New(ctx, s3.Config{
		Bucket: cfg.Bucket, Prefix: cfg.Prefix, Region: cfg.RegionName, Endpoint: cfg.EndpointURL,
		ForcePathStyle: cfg.ForcePathStyle, AccessKeyID: cfg.AccessKeyID, SecretAccessKey: cfg.SecretAccessKey,
		SessionToken: cfg.SessionToken, MaxConns: cfg.UploadConcurrency*4 + 32, RequestTimeout: cfg.StoreTimeout,
		StorageClass:   cfg.StorageClass,
		SSECustomerKey: cfg.SSECustomerKey, SSECustomerAlgorithm: cfg.SSECustomerAlgo,
		ServerSideEncryption: cfg.ServerSideEncryption, SSEKMSKeyID: cfg.SSEKMSKeyID,
		ChecksumWhenRequired:         cfg.RequestChecksumCalculation == "when_required",
		ResponseChecksumWhenRequired: cfg.ResponseChecksumValidation == "when_required",
		MultipartThreshold:           int64(cfg.MultipartThreshold),
		MultipartPartSize:            int64(cfg.MultipartChunksize),
	}, log)
	if err != nil {
		return err
	}
	checkCtx, cancel := context.WithTimeout(ctx, cfg.StoreTimeout)
	err = store.CheckBucket(checkCtx)
	cancel()
	if err != nil {
		return fmt.Errorf("cannot use bucket %q: %w", cfg.Bucket, err)
	}

	c, err := cache.Open(cache.Options{
		Dir: cfg.CacheDir, Store: store, Log: log,
		UploadConcurrency:  cfg.UploadConcurrency,
		NegativeTTL:        cfg.NegativeCacheTTL,
		RevalidateAfter:    cfg.RevalidateAfter,
		StoreTimeout:       cfg.StoreTimeout,
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
		return err
	}
	store.SetMultipartJournal(c)
	defer func() {
		if err := c.Close(); err != nil {
			log.Error("closing the cache index failed", "err", err)
		}
	}()

	uid, gid, err := ownerOf(mnt)
	if err != nil {
		return err
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
	server, err := mediafs.Mount(mnt, c, mediafs.MountOptions{
		Options: mediafs.Options{
			UID: uid, GID: gid, Log: log,
			EntryTimeout: cfg.EntryTimeout, AttrTimeout: cfg.AttrTimeout, NegativeTimeout: cfg.EntryTimeout,
		},
		AllowOther: allowOther,
		FsName:     "s3mediafs:" + cfg.Bucket,
		Debug:      m.debugFUSE,
	})
	if err != nil {
		return err
	}
	// Owed work is found from the index only now, with the mount serving.
	c.Start()
	log.Info("mounted", "mountpoint", mnt, "bucket", cfg.Bucket, "prefix", cfg.Prefix, "cache_dir", cfg.CacheDir)

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	done := make(chan struct{})
	go func() { server.Wait(); close(done) }()

	select {
	case <-done:
		log.Info("unmounted from outside")
	case sig := <-sigs:
		log.Info("stopping", "signal", sig.String())
		unmountWhenIdle(mnt, server, done, sigs, log)
	}

	drainCtx, cancelDrain := context.WithTimeout(ctx, cfg.DrainTimeout)
	defer cancelDrain()
	if left, err := c.Drain(drainCtx); err != nil {
		log.Warn("stopping with uploads still owed; they resume at the next start", "owed", left)
	} else {
		log.Info("all uploads done")
	}
	return nil
}

// unmountWhenIdle retries the unmount while files are open (EBUSY); a
// second signal forces a lazy unmount.
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
// directory, or already has something mounted on it.
func checkMountpoint(p string) (string, error) {
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
	mounted, err := isMountpoint(abs)
	if err != nil {
		return "", err
	}
	if mounted {
		return "", fmt.Errorf("mount point %s already has a filesystem mounted on it", abs)
	}
	return abs, nil
}

// isMountpoint reports whether p appears as a mount point in mountinfo.
func isMountpoint(p string) (bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && unescapeMountinfo(fields[4]) == p {
			return true, nil
		}
	}
	return false, sc.Err()
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
