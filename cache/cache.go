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
	"github.com/s3mediafs/s3mediafs/cache/objstore"
	"github.com/s3mediafs/s3mediafs/cache/uploadqueue"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/sync/singleflight"
)

// Options configures a Cache. Zero values take the documented defaults.
type Options struct {
	Dir   string // holds index/ (Badger), data/ (file contents) and tmp/
	Store objstore.Store
	Log   *slog.Logger

	UploadConcurrency int           // parallel uploads and deletes; default 8
	RetryMin          time.Duration // first retry delay for a failed upload; default 1s
	RetryMax          time.Duration // cap on the retry delay; default 1m
	NegativeTTL       time.Duration // how long "not in the store" is believed; default 2s
	// MadeDirTrust is how long after this mount made a directory a name
	// the index lacks in it is taken as absent without asking the store,
	// as NegativeTTL is for other directories: Synapse's makedirs and
	// create in the media directories it just made then cost no LIST.
	// Another host's new file in such a directory is found once it has
	// passed. 0 leaves NegativeTTL alone.
	MadeDirTrust time.Duration
	// RevalidateAfter is how old a confirmation that a clean or remote file
	// still exists in the store may get before a lookup asks the store again
	// (HEAD), so deletes and rewrites by other hosts are seen. 0 disables.
	RevalidateAfter time.Duration
	// RevalidateWaits makes the lookup that finds a file due for
	// revalidation wait for the HEAD. By default the lookup is answered
	// from the index and the HEAD runs in the background, so a warm hit
	// or a purge never waits for the store; a file another host deleted
	// or rewrote is then seen by the lookups after it.
	RevalidateWaits bool
	StoreTimeout    time.Duration // bound on a lookup or a fetch of a missing file; default 30s
	// LookupTimeout bounds one store lookup (HEAD or LIST) of an unknown
	// name; default 3s.
	LookupTimeout time.Duration
	// FetchAheadMax is the largest store-only file whose download a lookup
	// starts, beside the HEAD that reads its metadata: thumbnails and small
	// images, whose open follows their lookup, then cost the store's
	// latency once past the lookup rather than twice. A lookup that no
	// open follows (a stat, an unlink of a file this mount never saw)
	// wastes that GET. 0 turns it off.
	FetchAheadMax int64
	// SkipObjectMeta shows the mount's owner and modes for objects learned
	// from a listing rather than reading their metadata with a HEAD at
	// their first lookup (a store whose objects carry none).
	SkipObjectMeta bool
	// MaxKeyLen is the longest path the store accepts (1024 minus the prefix).
	MaxKeyLen int

	// MaxSize bounds the bytes of local data files; 0 means no bound.
	MaxSize int64
	// MinFree is the free space to keep on the cache filesystem, in bytes;
	// MinFreePercent, if larger once converted, wins.
	MinFree        int64
	MinFreePercent float64
	// MaxAge evicts clean files not opened for this long; 0 disables.
	MaxAge time.Duration
	// DirtyMax bounds bytes not yet in the store: past it, new writes wait
	// (up to SpaceWait) for uploads. Default MaxSize/2; 0 with no MaxSize
	// means no bound.
	DirtyMax int64
	// SpaceWait bounds how long a writer or reader waits for room before
	// it gets ENOSPC; default 60s.
	SpaceWait time.Duration

	// LocalOnly says which paths never go to the store (url_cache, or a
	// tree whose store_local/store_remote is off); nil means none.
	LocalOnly func(p string) bool
	// KeepDeletedInStore leaves objects in the store when their files are
	// removed (delete_from_s3: false); the mount hides them.
	KeepDeletedInStore bool
	// Synchronous makes close() and fsync() wait until the store has the
	// file, and report the error if it could not be stored in StoreTimeout.
	Synchronous bool
	// RmdirWaitsForStore makes rmdir of a directory the index cannot prove
	// empty in the store wait for a LIST. By default rmdir answers from the
	// index and the store is checked in the background: a directory that
	// still holds another host's objects shows again (see rmdirChecks).
	// With KeepDeletedInStore rmdir always waits, because removing hides
	// what lies below.
	RmdirWaitsForStore bool

	settle          time.Duration // abandonedRequestsSettle; tests shorten it
	rmdirCheckEvery time.Duration // how often removed directories are checked; default 2s
}

func (o *Options) setDefaults() {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.UploadConcurrency <= 0 {
		o.UploadConcurrency = 8
	}
	if o.RetryMin <= 0 {
		o.RetryMin = time.Second
	}
	if o.RetryMax <= 0 {
		o.RetryMax = time.Minute
	}
	if o.NegativeTTL <= 0 {
		o.NegativeTTL = 2 * time.Second
	}
	if o.StoreTimeout <= 0 {
		o.StoreTimeout = 30 * time.Second
	}
	if o.LookupTimeout <= 0 {
		o.LookupTimeout = 3 * time.Second
	}
	if o.MaxKeyLen <= 0 {
		o.MaxKeyLen = 1024
	}
	if o.DirtyMax <= 0 && o.MaxSize > 0 {
		o.DirtyMax = o.MaxSize / 2
	}
	if o.SpaceWait <= 0 {
		o.SpaceWait = 60 * time.Second
	}
	if o.settle <= 0 {
		o.settle = abandonedRequestsSettle
	}
	if o.rmdirCheckEvery <= 0 {
		o.rmdirCheckEvery = 2 * time.Second
	}
}

// The families of the cache's work (see "Where things live" in the package
// documentation). Each embeds the Cache whose state it works on.
type (
	fetcher     struct{ *Cache } // a cache miss: fetch.go
	evictor     struct{ *Cache } // eviction and the orphan sweep: evict.go
	spaceKeeper struct{ *Cache } // the size limit and free-space floor: space.go
	uploader    struct{ *Cache } // a path's owed work: upload.go, moveobject.go
	mover       struct{ *Cache } // renames: rename.go, renamedir.go, learntree.go
	remote      struct{ *Cache } // what the store holds: lookup.go, revalidate.go, meta.go, subtree.go, health.go
	lister      struct{ *Cache } // directory listings: readdir.go
	remover     struct{ *Cache } // unlink and rmdir: remove.go
)

// Cache is the write-back cache. Its methods are safe for concurrent use.
// No lock is held across a call to the store; the lock order is in the
// package documentation.
type Cache struct {
	// The work, by family: each owns its family's methods and reaches
	// the shared state below through the Cache it embeds.
	fetcher     fetcher
	evictor     evictor
	spaceKeeper spaceKeeper
	uploader    uploader
	mover       mover
	remote      remote
	lister      lister
	remover     remover

	moving  movingTrees // directory renames under way (see Resolve)
	opts    Options
	log     *slog.Logger
	store   objstore.Store
	ix      *index
	dataDir string
	tmpDir  string
	data    *datafiles.Dir // the data files, their spares and free space

	mu       sync.Mutex           // guards every index read-modify-write, and the fields below
	open     map[string]*openFile // open files by current path
	negative recentNames          // paths the store lacked, until the time given
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
	// watches holds, for each directory being listed, the names whose
	// records changed since the listing began (see forgetUnlisted).
	watches    map[string]map[string]struct{}
	subtrees   map[string]*subtree  // what lookups learned below directories; see subtree
	verified   map[string]time.Time // when the store last confirmed a clean/remote file
	used       int64                // bytes of local data files, as the index records them
	dirty      int64                // bytes not yet in the store
	dirtyFiles int64                // files not yet in the store
	wanted     int64                // bytes that writers and readers wait for
	accessed   map[string]int64     // opens since the last access flush (unix nanoseconds)
	space      *notifier            // signalled when used or dirty bytes change

	evictKick chan struct{} // wakes the evictor

	downloads     map[string]*download // fetches in flight, by path; guarded by mu
	fetchBudget   fetchBudget          // bounds those fetches
	lookups       singleflight.Group   // one store lookup per unknown name, shared by callers
	metaLookups   singleflight.Group   // one HEAD per object whose metadata is unknown
	revalidations singleflight.Group   // one background HEAD per file due for revalidation
	listings      singleflight.Group   // one LIST per directory listed, shared by callers
	q             *uploadqueue.Queue
	rmdirChecks   *rmdirChecks // directories removed on the index's word, to check in the store
	uploadsDone   *notifier    // broadcast after every upload job, for synchronous writers
	stats         counters
	health        storeHealth

	uncleanStop bool      // the previous run did not close the index
	openedAt    time.Time // when Open began
	births      births    // data files made while an orphan sweep may run
	// settledAt is when requests abandoned by an unclean stop can no
	// longer reach the store (see deleteRemote); zero after a clean one.
	settledAt time.Time

	stop    context.CancelFunc
	bg      sync.WaitGroup
	closing atomic.Bool // Close has begun
	closed  atomic.Bool // the index is closed: no more updates
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
	c := &Cache{
		openedAt:    time.Now(),
		opts:        opts,
		log:         opts.Log,
		store:       opts.Store,
		dataDir:     filepath.Join(opts.Dir, "data"),
		tmpDir:      filepath.Join(opts.Dir, "tmp"),
		open:        map[string]*openFile{},
		negative:    newRecentNames(),
		listed:      newRecentNames(),
		readdirs:    newRecentNames(),
		made:        newRecentNames(),
		watches:     map[string]map[string]struct{}{},
		downloads:   map[string]*download{},
		fetchBudget: newFetchBudget(opts.MaxSize),
		subtrees:    map[string]*subtree{},
		verified:    map[string]time.Time{},
		accessed:    map[string]int64{},
		space:       newNotifier(),
		evictKick:   make(chan struct{}, 1),
		rmdirChecks: newRmdirChecks(opts.rmdirCheckEvery),
	}
	c.fetcher, c.evictor, c.spaceKeeper, c.uploader = fetcher{c}, evictor{c}, spaceKeeper{c}, uploader{c}
	c.mover, c.remote, c.lister, c.remover = mover{c}, remote{c}, lister{c}, remover{c}
	c.data = datafiles.New(c.dataDir, c.births.add, c.log)
	for _, d := range []string{opts.Dir, c.dataDir, c.tmpDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("cache: create %s: %w", d, err)
		}
	}
	// tmp/ holds only fetches that were in flight when the daemon stopped;
	// none of them is referenced by the index.
	if err := os.RemoveAll(c.tmpDir); err != nil {
		return nil, fmt.Errorf("cache: clear %s: %w", c.tmpDir, err)
	}
	if err := os.MkdirAll(c.tmpDir, 0o700); err != nil {
		return nil, fmt.Errorf("cache: create %s: %w", c.tmpDir, err)
	}
	ix, err := openIndex(opts.Dir, opts.Log)
	if err != nil {
		return nil, err
	}
	c.ix = ix
	if c.used, c.dirty, c.dirtyFiles, err = loadAcct(ix.db); err != nil {
		ix.close()
		return nil, fmt.Errorf("cache: %w", err)
	}
	if c.uncleanStop, err = ix.markRunning(); err != nil {
		ix.close()
		return nil, fmt.Errorf("cache: %w", err)
	}
	if c.uncleanStop {
		c.births.start() // before any data file of this run is made
		c.settledAt = c.openedAt.Add(opts.settle)
	}
	c.uploadsDone = newNotifier()
	c.q = uploadqueue.New(uploadqueue.Options{
		Sync:        c.uploader.syncPath,
		RetryMin:    opts.RetryMin,
		RetryMax:    opts.RetryMax,
		IsPermanent: isPermanent,
		Failed:      c.stats.storeError,
		Finished:    c.uploadsDone.Broadcast,
		Log:         c.log,
	})
	if err := c.mover.finishRenames(); err != nil {
		ix.close()
		return nil, fmt.Errorf("cache: %w", err)
	}
	opts.Log.Info("cache opened", "dir", opts.Dir, "local_bytes", c.used, "dirty_bytes", c.dirty,
		"max_size", opts.MaxSize, "unclean_stop", c.uncleanStop)
	return c, nil
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
	ctx, cancel := context.WithCancel(context.Background())
	c.stop = cancel
	c.q.Start(ctx, c.opts.UploadConcurrency)
	c.bg.Add(3)
	go func() {
		defer c.bg.Done()
		c.evictor.evictLoop(ctx)
	}()
	if c.uncleanStop {
		c.bg.Add(1)
		go func() {
			defer c.bg.Done()
			c.evictor.sweepOrphans(ctx)
		}()
	}
	c.q.SetScanning(true)
	go func() {
		defer c.bg.Done()
		defer c.q.SetScanning(false)
		n := 0
		err := c.ix.forPending(func(p string) {
			c.q.Add(p)
			n++
		})
		if err != nil {
			c.log.Error("scan of owed uploads failed", "err", err)
		}
		if n > 0 {
			c.log.Info("resuming owed uploads and deletes from the index", "count", n)
		}
	}()
	go func() {
		defer c.bg.Done()
		c.janitor(ctx)
	}()
	c.bg.Add(2)
	go func() {
		defer c.bg.Done()
		c.data.FillSpares(ctx)
	}()
	go func() {
		defer c.bg.Done()
		c.remover.checkRemovedDirsLoop(ctx)
	}()
}

// Close stops the workers and closes the index. Owed work stays recorded in
// the index and resumes at the next Start. Call Drain first to wait for it.
func (c *Cache) Close() error {
	if !c.closing.CompareAndSwap(false, true) {
		return nil
	}
	if c.stop != nil {
		c.stop()
	}
	c.q.Wait()
	// Background work started under c.mu checks closing first: once this
	// lock is taken, no more of it can start.
	c.mu.Lock()
	//lint:ignore SA2001 a barrier, see above
	c.mu.Unlock()
	c.bg.Wait()
	c.evictor.flushAccess()
	c.mu.Lock()
	for _, of := range c.open {
		if of.data != nil {
			of.data.Close()
		}
	}
	c.mu.Unlock()
	err := c.ix.markStopped()
	c.closed.Store(true)
	return errors.Join(err, c.ix.close())
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
func (c *Cache) Sync() error { return c.ix.db.Sync() }

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
		for d, s := range c.subtrees {
			if now.Sub(s.at) > c.remote.subtreeAge() {
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

// view runs fn in a read-only index transaction.
func (c *Cache) view(fn func(txn *badger.Txn) error) error {
	c.stats.indexReads.Add(1)
	return c.ix.db.View(fn)
}

// readRecord is getRecord in a read-only transaction of its own.
func (c *Cache) readRecord(p string) (r record, ok bool, err error) {
	err = c.view(func(txn *badger.Txn) error {
		r, ok, err = getRecord(txn, p)
		return err
	})
	return r, ok, err
}
