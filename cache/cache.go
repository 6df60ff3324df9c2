package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/datafiles"
	"github.com/s3mediafs/s3mediafs/cache/index"
	"github.com/s3mediafs/s3mediafs/cache/objstore"
	"github.com/s3mediafs/s3mediafs/cache/uploadqueue"

	"golang.org/x/sync/singleflight"
)

// Cache is the write-back cache. Its methods are safe for concurrent use.
// No lock is held across a call to the store; the lock order is in the
// package documentation.
type Cache struct {
	opts    Options
	log     *slog.Logger
	store   objstore.Store
	ix      *index.DB
	dataDir string
	tmpDir  string
	data    *datafiles.Dir // the data files, their spares and free space

	mu       sync.Mutex             // guards every index read-modify-write, and the fields below
	open     map[string]*openFile   // open files by current path
	detached map[*openFile]struct{} // open files whose name is gone (detachLocked)
	negative recentNames            // paths the store lacked, until the time given
	// listed holds directories whose every name in the store was known
	// (recorded in the index) at the time given: an empty LIST under a
	// new directory, or a full readdir. Until NegativeTTL has passed, a
	// name the index lacks there is absent without asking the store, so
	// Synapse's mkdir-then-create costs no lookup requests.
	listed recentNames
	// readdirs holds directories listed by a readdir, when: the lookups
	// of their names that follow fetch nothing ahead (see learnMeta).
	readdirs recentNames
	// made holds directories this mount made, when (see MadeDirTrust).
	made recentNames
	// listedAhead holds directories whose tree was listed ahead into the
	// index, when (listahead.go).
	listedAhead recentNames
	// settled holds keys whose owed delete (an unlink's, a rename's
	// move away) landed, when: a store answer asked for before that
	// time may still show the object, and must not bring it back.
	settled    recentNames
	verified   map[string]time.Time // when the store last confirmed a clean/remote file
	used       int64                // bytes of local data files, as the index records them
	dirty      int64                // bytes not yet in the store
	dirtyFiles int64                // files not yet in the store
	wanted     int64                // bytes that writers and readers wait for
	space      *notifier            // signalled when used or dirty bytes change

	// The state of single kinds of work, guarded by mu like the rest:
	// each changes in the same critical sections as the index records
	// and open files it is about.
	downloads     map[string]*download           // fetches in flight, by path (fetch.go)
	accessed      map[string]int64               // opens since the last LRU flush, unix ns (evict.go)
	subtrees      map[string]*subtree            // what lookups learned below directories (subtree.go)
	ahead         purgeAhead                     // small objects' metadata asked for ahead of a purge (purgeahead.go)
	watches       map[string]map[string]struct{} // per directory being listed, names changed since (readdir.go)
	lookups       singleflight.Group             // one store lookup per unknown name (lookup.go)
	metaLookups   singleflight.Group             // one HEAD per object whose metadata is unknown (meta.go)
	revalidations singleflight.Group             // one background HEAD per file due (revalidate.go)
	listings      singleflight.Group             // one LIST per directory listed (readdir.go)

	// Owners of their own state and lock, each a leaf in the lock order.
	fetchBudget fetchBudget    // bounds the fetches in flight (fetch.go)
	births      births         // data files made while an orphan sweep may run (evict.go)
	moving      movingTrees    // directory renames under way (renamedir.go)
	health      storeHealth    // the store's circuit breaker (health.go)
	rmdirChecks *rmdirChecks   // directories removed on the index's word (rmdircheck.go)
	deletes     *deleteBatches // owed deletes, sent in batches (deletebatch.go)
	evictKick   chan struct{}  // wakes the eviction loop

	q           *uploadqueue.Queue
	uploadsDone *notifier // broadcast after every upload job, for synchronous writers
	stats       counters

	uncleanStop bool      // the previous run did not close the index
	openedAt    time.Time // when Open began
	// settledAt is when requests abandoned by an unclean stop can no
	// longer reach the store (see deleteRemote); zero after a clean one.
	settledAt time.Time

	// life is the context of all background work: Close ends it first.
	life    context.Context
	endLife context.CancelFunc
	lifeMu  sync.Mutex     // orders background's check of closing with Close
	bg      sync.WaitGroup // every goroutine the cache starts
	closing atomic.Bool    // Close has begun: no background work starts
	closed  atomic.Bool    // the index is closed: no more updates
	started atomic.Bool
}

// Open opens (or creates) the cache in opts.Dir. It reads nothing but the
// index's own files: pending work is found later, by Start.
func Open(opts Options) (*Cache, error) {
	opts.setDefaults()
	if opts.Store == nil {
		return nil, errors.New("cache: no store")
	}
	if opts.Dir == "" {
		return nil, errors.New("cache: no directory")
	}
	ix := opts.Index
	if ix == nil {
		if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("cache: create %s: %w", opts.Dir, err)
		}
		var err error
		if ix, err = index.Open(opts.Dir, opts.Log); err != nil {
			return nil, err
		}
	}
	c, err := openOver(ix, opts)
	if err != nil {
		ix.Close()
		return nil, fmt.Errorf("cache: %w", err)
	}
	opts.Log.Info("cache opened", "dir", opts.Dir, "local_bytes", c.used, "dirty_bytes", c.dirty,
		"max_size", opts.MaxSize, "unclean_stop", c.uncleanStop)
	return c, nil
}

// openOver opens the cache over its open index. The index comes first:
// its lock keeps a second daemon from clearing the first one's tmp/.
func openOver(ix *index.DB, opts Options) (*Cache, error) {
	c := newCache(opts)
	c.ix = ix
	for _, d := range []string{c.dataDir, c.tmpDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	// tmp/ holds only fetches that were in flight when the daemon stopped;
	// none of them is referenced by the index.
	if err := os.RemoveAll(c.tmpDir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(c.tmpDir, 0o700); err != nil {
		return nil, err
	}
	acct, err := ix.LoadAcct()
	if err != nil {
		return nil, err
	}
	c.used, c.dirty, c.dirtyFiles = acct.Used, acct.Dirty, acct.DirtyFiles
	if c.uncleanStop, err = ix.MarkRunning(); err != nil {
		return nil, err
	}
	if c.uncleanStop {
		c.births.start() // before any data file of this run is made
		c.settledAt = c.openedAt.Add(opts.settle)
	}
	if err := c.finishRenames(); err != nil {
		return nil, err
	}
	return c, nil
}

// newCache is the cache's memory, its helpers and its upload queue.
func newCache(opts Options) *Cache {
	c := &Cache{
		openedAt:    time.Now(),
		opts:        opts,
		log:         opts.Log,
		store:       opts.Store,
		dataDir:     filepath.Join(opts.Dir, "data"),
		tmpDir:      filepath.Join(opts.Dir, "tmp"),
		open:        map[string]*openFile{},
		detached:    map[*openFile]struct{}{},
		negative:    newRecentNames(),
		listed:      newRecentNames(),
		readdirs:    newRecentNames(),
		made:        newRecentNames(),
		listedAhead: newRecentNames(),
		settled:     newRecentNames(),
		verified:    map[string]time.Time{},
		space:       newNotifier(),
		uploadsDone: newNotifier(),
		downloads:   map[string]*download{},
		accessed:    map[string]int64{},
		subtrees:    map[string]*subtree{},
		ahead:       purgeAhead{inFlight: map[string]chan struct{}{}},
		watches:     map[string]map[string]struct{}{},
		fetchBudget: newFetchBudget(opts.MaxSize),
		rmdirChecks: newRmdirChecks(opts.rmdirCheckEvery),
		evictKick:   make(chan struct{}, 1),
	}
	c.life, c.endLife = context.WithCancel(context.Background())
	c.deletes = newDeleteBatches(opts.Store, opts.DeleteOneByOne, opts.StoreTimeout, opts.UploadConcurrency, c.background, c.log)
	c.data = datafiles.New(c.dataDir, c.births.add, c.log)
	c.q = uploadqueue.New(uploadqueue.Options{
		Sync:        c.syncPath,
		RetryMin:    opts.RetryMin,
		RetryMax:    opts.RetryMax,
		IsPermanent: isPermanent,
		Failed:      c.stats.storeError,
		Finished:    c.uploadsDone.Broadcast,
		Log:         c.log,
	})
	return c
}

// abandonedRequestsSettle bounds how long after an unclean stop a request
// the dead daemon had sent may still be carried out by the store (or a
// proxy in front of it) that had received it whole: a PUT of a file since
// removed could then land after the restarted daemon's DELETE. Deletes
// sent before then are sent once more after it.
const abandonedRequestsSettle = 10 * time.Second

// Start begins background work: upload workers, re-queueing of every upload
// and delete the index says is owed, and housekeeping. Call it once the
// mount is serving, so that a long backlog does not delay the mount.
func (c *Cache) Start() {
	if !c.started.CompareAndSwap(false, true) {
		return
	}
	c.q.Start(c.life, c.opts.UploadConcurrency)
	c.background(c.evictLoop)
	if c.opts.ScrubRate > 0 {
		c.background(c.scrubLoop)
	}
	if c.uncleanStop {
		c.background(c.sweepOrphans)
	}
	c.q.SetScanning(true)
	c.background(func(context.Context) {
		defer c.q.SetScanning(false)
		n := 0
		err := c.ix.ForPending(func(p string) {
			c.q.Add(p)
			n++
		})
		if err != nil {
			c.log.Error("scan of owed uploads failed", "err", err)
		}
		if n > 0 {
			c.log.Info("resuming owed uploads and deletes from the index", "count", n)
		}
	})
	c.background(c.janitor)
	c.background(c.data.FillSpares)
	c.background(c.checkRemovedDirsLoop)
}

// background runs fn in a goroutine of the cache's lifetime: its context
// ends when Close begins, and Close waits for it. Once Close has begun it
// starts nothing and reports false.
func (c *Cache) background(fn func(ctx context.Context)) bool {
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	if c.closing.Load() {
		return false
	}
	c.bg.Go(func() { fn(c.life) })
	return true
}

// Close stops the workers and closes the index. Owed work stays recorded in
// the index and resumes at the next Start. Call Drain first to wait for it.
func (c *Cache) Close() error {
	c.lifeMu.Lock()
	first := c.closing.CompareAndSwap(false, true)
	c.lifeMu.Unlock()
	if !first {
		return nil
	}
	// No background work starts from here on (background); what runs
	// sees its context end, and is waited for.
	c.endLife()
	c.q.Wait()
	c.bg.Wait()
	c.flushAccess()
	c.mu.Lock()
	// Files whose release never came: the kernel drops pending releases
	// when the mount goes first.
	closeData := func(of *openFile) {
		if of.data != nil {
			of.data.Close()
		}
	}
	for _, of := range c.open {
		closeData(of)
	}
	for of := range c.detached {
		closeData(of)
	}
	// Under c.mu, where every index update runs: none is under way, and
	// none runs after (update checks closed).
	c.closed.Store(true)
	c.mu.Unlock()
	return errors.Join(c.ix.MarkStopped(), c.ix.Close())
}

// Drain waits until no upload or delete is owed, or ctx ends. It returns
// the number of paths still owed.
func (c *Cache) Drain(ctx context.Context) (int, error) {
	n, err := c.q.Drain(ctx)
	if errors.Is(err, uploadqueue.ErrStopped) {
		err = ErrClosed
	}
	return n, err
}

// Sync makes every committed index change durable (fsync).
func (c *Cache) Sync() error { return c.ix.Sync() }

// Dir is the cache directory.
func (c *Cache) Dir() string { return c.opts.Dir }

// TempDir is a directory on the cache filesystem for scratch files; it is
// emptied at every Open.
func (c *Cache) TempDir() string { return c.tmpDir }

// janitor forgets expired negative lookups, kept trees and stale
// verifications, so those maps hold only what a recent lookup needs.
func (c *Cache) janitor(ctx context.Context) {
	tick(ctx, 30*time.Second, func(now time.Time) {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.negative.dropIf(now.After)
		c.listed.dropIf(func(at time.Time) bool { return now.Sub(at) > c.opts.NegativeTTL })
		c.readdirs.dropIf(func(at time.Time) bool { return now.Sub(at) > readdirQuiet })
		c.made.dropIf(func(at time.Time) bool { return now.Sub(at) > c.opts.MadeDirTrust })
		c.listedAhead.dropIf(func(at time.Time) bool { return now.Sub(at) > c.opts.RevalidateAfter })
		for d, s := range c.subtrees {
			if now.Sub(s.at) > c.subtreeAge() {
				delete(c.subtrees, d)
			}
		}
		for p, at := range c.verified {
			if now.Sub(at) > c.opts.RevalidateAfter {
				delete(c.verified, p)
			}
		}
	})
}

// tick calls fn every period until ctx ends.
func tick(ctx context.Context, period time.Duration, fn func(now time.Time)) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			fn(now)
		}
	}
}
