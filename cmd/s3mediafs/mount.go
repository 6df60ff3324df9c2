package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/s3mediafs/s3mediafs/cache"
	"github.com/s3mediafs/s3mediafs/cache/index"
	"github.com/s3mediafs/s3mediafs/cache/objstore"
	mediafs "github.com/s3mediafs/s3mediafs/fs"
	"github.com/s3mediafs/s3mediafs/s3"
)

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
	next, err := serve(m, log, ready)
	if err != nil {
		ready.failed(err)
		log.Error("s3mediafs stopped", "err", err)
		return exitError
	}
	if next != nil {
		if err := next.complete(log); err != nil {
			log.Error("handing the mount over failed", "err", err)
			return exitError
		}
	}
	return exitOK
}

// serve runs the daemon: store, cache, control socket, mount (or the live
// mount another daemon hands over), then until a signal or an unmount from
// outside, then the drain; or until it hands the mount on, which the
// caller then completes once everything here is closed.
func serve(m *mountArgs, log *slog.Logger, ready *readyReporter) (next *handingOver, err error) {
	// Signals are ours from the start: one that arrives just after
	// READY=1 must stop the daemon gracefully, not kill it.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	cfg := m.cfg
	socket := cfg.ControlSocket
	abs, err := filepath.Abs(m.mountpoint)
	if err != nil {
		return nil, err
	}
	if socket == "" {
		socket = socketFor(abs)
	}
	live, err := liveMount(abs, takeoverSocket(socket), takeoverIdentity(cfg), log)
	if err != nil {
		return nil, err
	}
	defer live.close()
	mnt := abs
	if live.h == nil {
		if mnt, err = checkMountpoint(m.mountpoint, cfg.AllowNonEmptyMountpoint, log); err != nil {
			return nil, err
		}
	}
	ctx, stopBackground := context.WithCancel(context.Background())
	defer stopBackground()
	// The index comes first: it holds the store's multipart journal, and
	// its lock keeps a second daemon off this cache_dir.
	ix, err := openIndex(cfg.CacheDir, log)
	if err != nil {
		return nil, err
	}
	client, unreachable, closeStore, err := openStore(ctx, cfg, m.embedded, ix, log)
	if err != nil {
		closeStore()
		ix.Close()
		return nil, err
	}
	defer closeStore()
	met := newMetrics()
	c, err := openCache(cfg, ix, client, met, log)
	if err != nil {
		return nil, err
	}
	if unreachable != nil {
		c.StoreUnreachable(unreachable)
	}
	defer func() {
		if err := c.Close(); err != nil {
			log.Error("closing the cache index failed", "err", err)
		}
	}()
	// Multipart uploads a crash cut off are aborted in the background;
	// the journal they are cleared from closes with the cache, after this.
	aborted := make(chan struct{})
	go func() {
		defer close(aborted)
		client.AbortLeftoverMultiparts(ctx)
	}()
	defer func() { stopBackground(); <-aborted }()
	control, closeControl, err := startControl(ctx, c, cfg, mnt, socket, log)
	if err != nil {
		return nil, err
	}
	defer closeControl()
	server, ioMode, err := mountFS(mnt, c, cfg, met, m.debugFUSE, live, log)
	if err != nil {
		return nil, err
	}
	control.setIOMode(ioMode)
	takeovers := make(chan takeoverRequest)
	closeTakeover, err := listenTakeover(takeoverSocket(socket), takeoverIdentity(cfg), takeovers, log)
	if err != nil {
		log.Warn("serving without a takeover socket: a restart of this mount will not be seamless", "err", err)
	} else {
		defer closeTakeover()
	}
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
	next = runUntilSignal(ctx, mnt, server, c, sigs, takeovers, cfg.DrainTimeout.D(), log)
	if next != nil {
		next.m = m
	}
	return next, nil
}

// openIndex opens the cache's index in dir.
func openIndex(dir string, log *slog.Logger) (*index.DB, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create cache_dir: %w", err)
	}
	return index.Open(dir, log)
}

// openStore connects to the bucket (or starts the embedded quickstart
// store) and checks it can be used; journal keeps its open multipart
// uploads. close stops what it started. A store that answers that the
// configuration is wrong (no such bucket, access denied, a bad key, a
// host name that does not exist, a certificate for another name) is an
// error. One that does not answer (refused, timed out, 5xx) is not: the
// daemon mounts without it, as in an outage, and unreachable says why.
func openStore(ctx context.Context, cfg Config, embeddedDir string, journal s3.MultipartJournal, log *slog.Logger) (_ *s3.Client, unreachable error, close func(), err error) {
	close = func() {}
	s3cfg := s3ConfigOf(cfg)
	if embeddedDir != "" {
		emb, err := startEmbeddedStore(embeddedDir, cfg.Bucket, log)
		if err != nil {
			return nil, nil, close, err
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
	client, err := s3.New(ctx, s3cfg, journal, log)
	if err != nil {
		return nil, nil, close, err
	}
	stopEmbedded := close
	close = func() { client.Close(); stopEmbedded() }
	checkCtx, cancel := context.WithTimeout(ctx, cfg.StoreTimeout.D())
	err = client.CheckBucket(checkCtx)
	cancel()
	switch {
	case err == nil:
	case misconfigured(err) || embeddedDir != "":
		return nil, nil, close, fmt.Errorf("cannot use bucket %q: %w", cfg.Bucket, err)
	default:
		log.Warn("the object store does not answer; mounting without it, as in an outage: cached files are served, "+
			"writes are kept and uploaded once it answers, names not in the cache answer \"absent\"; it is asked again every few seconds",
			"bucket", cfg.Bucket, "endpoint", cfg.EndpointURL, "err", err)
		return client, err, close, nil
	}
	return client, nil, close, nil
}

// misconfigured reports a store answer that only a change of
// configuration or policy cures, as opposed to a store that did not
// answer (yet).
func misconfigured(err error) bool {
	var dns *net.DNSError
	var unknownCA x509.UnknownAuthorityError
	var badHost x509.HostnameError
	var badCert x509.CertificateInvalidError
	return objstore.IsPermanent(err) ||
		(errors.As(err, &dns) && dns.IsNotFound) ||
		errors.As(err, &unknownCA) || errors.As(err, &badHost) || errors.As(err, &badCert)
}

// openCache opens the cache over its index and the store, its requests
// timed by met. The cache owns ix from here, even when it fails to open.
func openCache(cfg Config, ix *index.DB, client *s3.Client, met *metrics, log *slog.Logger) (*cache.Cache, error) {
	c, err := cache.Open(cache.Options{
		Dir: cfg.CacheDir, Index: ix, Store: instrumentedStore{Store: client, m: met}, Log: log,
		UploadConcurrency:  cfg.UploadConcurrency,
		NegativeTTL:        cfg.NegativeCacheTTL.D(),
		MadeDirTrust:       cfg.MadeDirTrust.D(),
		FetchAheadMax:      int64(cfg.FetchAheadMax),
		RevalidateAfter:    cfg.RevalidateAfter.D(),
		RevalidateWaits:    cfg.RevalidateWaits,
		DeleteOneByOne:     !cfg.BatchDeletes,
		ListAheadKeys:      listAheadKeys(cfg.ListAheadKeys),
		StoreTimeout:       cfg.StoreTimeout.D(),
		LookupTimeout:      cfg.LookupTimeout.D(),
		SkipObjectMeta:     cfg.ReadObjectMetadata != nil && !*cfg.ReadObjectMetadata,
		MaxKeyLen:          1024 - len(cfg.Prefix),
		MaxSize:            int64(cfg.CacheMaxSize),
		MinFree:            cfg.CacheMinFree.Bytes,
		MinFreePercent:     cfg.CacheMinFree.Percent,
		MaxAge:             cfg.CacheMaxAge.D(),
		ScrubRate:          int64(cfg.ScrubRate),
		DirtyMax:           int64(cfg.DirtyMaxSize),
		SpaceWait:          cfg.SpaceWait.D(),
		LocalOnly:          cfg.localOnly(),
		KeepDeletedInStore: !cfg.DeleteFromS3,
		Synchronous:        cfg.StoreSynchronous,
		RmdirWaitsForStore: cfg.RmdirWaitsForStore,
	})
	if err != nil {
		return nil, err
	}
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
func mountFS(mnt string, c *cache.Cache, cfg Config, met *metrics, debug bool, live *liveMountHandover, log *slog.Logger) (*mediafs.Server, string, error) {
	var uid, gid uint32
	var err error
	if live.h != nil {
		uid, gid, err = live.h.Owner()
	} else {
		uid, gid, err = ownerOf(mnt)
	}
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
	mo := mediafs.MountOptions{
		Options: mediafs.Options{
			UID: uid, GID: gid, FileMode: fileMode, DirMode: dirMode, Log: log, Observe: met.observeFUSE,
			EntryTimeout: cfg.EntryTimeout.D(), AttrTimeout: cfg.AttrTimeout.D(), NegativeTimeout: min(cfg.EntryTimeout.D(), cfg.NegativeCacheTTL.D()),
			Passthrough: cfg.Passthrough, MountOwnsNewFiles: cfg.NewFileOwner == "mount",
		},
		AllowOther: allowOther,
		FsName:     "s3mediafs:" + cfg.Bucket,
		Debug:      debug,
	}
	server, err := live.mount(mnt, c, mo, log)
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
// up to drainTimeout. On SIGHUP, or a new daemon's takeover request, it
// stops serving and returns the mount to hand on; the uploads still owed
// are the next daemon's.
func runUntilSignal(ctx context.Context, mnt string, server *mediafs.Server, c *cache.Cache, sigs <-chan os.Signal, takeovers <-chan takeoverRequest, drainTimeout time.Duration, log *slog.Logger) *handingOver {
	done := make(chan struct{})
	go func() { server.Wait(); close(done) }()
	for stopping := false; !stopping; {
		select {
		case <-done:
			log.Info("unmounted from outside")
			stopping = true
		case req := <-takeovers:
			log.Info("a new daemon asks for the mount; handing it over")
			if next := suspend(server, log); next != nil {
				next.conn = req.conn
				return next
			}
			req.conn.Close()
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				log.Info("SIGHUP: restarting in place, the mount kept")
				if next := suspend(server, log); next != nil {
					return next
				}
				continue
			}
			log.Info("stopping", "signal", sig.String())
			notifyStopping(c)
			unmountWhenIdle(mnt, server, done, sigs, log)
			stopping = true
		}
	}
	removeFromSystemd()
	drainCtx, cancelDrain := context.WithTimeout(ctx, drainTimeout)
	defer cancelDrain()
	if left, err := c.Drain(drainCtx); err != nil {
		log.Warn("stopping with uploads still owed; they resume at the next start", "owed", left)
	} else {
		log.Info("all uploads done")
	}
	return nil
}

// suspend stops serving the mount and returns it to hand on.
func suspend(server *mediafs.Server, log *slog.Logger) *handingOver {
	h, err := server.Handover()
	if err != nil {
		log.Error("cannot hand the mount over; serving on", "err", err)
		return nil
	}
	if !server.Suspend(handoverWait) {
		log.Warn("requests still being answered are left to the next daemon: the kernel sends them again")
	}
	return &handingOver{h: h}
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

// listAheadKeys is list_ahead_keys as the cache takes it: 0 (off) is
// negative there, where 0 is the default.
func listAheadKeys(n int) int {
	if n == 0 {
		return -1
	}
	return n
}
