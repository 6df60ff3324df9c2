package cache

import (
	"log/slog"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/index"
	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// Options configures a Cache. Zero values take the documented defaults.
type Options struct {
	Dir   string // holds index/ (Badger), data/ (file contents) and tmp/
	Store objstore.Store
	// Index is the index in Dir, opened by index.Open; nil: Open opens it.
	// The cache closes it either way. (It is opened apart when the store
	// keeps its multipart journal in it: s3.New reads the journal first.)
	Index *index.DB
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
	// FetchAheadMax is the largest store-only file whose download a stat
	// starts instead of a HEAD, answering once the GET's response has
	// brought the metadata: thumbnails and images, whose open follows
	// their stat, then cost the store's latency once rather than twice.
	// A stat that no open follows downloads the file into the cache all
	// the same. Objects of rangedFetchMin (16 MiB) or more, fetched as
	// ranges, are never fetched ahead. 0 turns it off.
	FetchAheadMax int64
	// SkipObjectMeta shows the mount's owner and modes for objects learned
	// from a listing rather than reading their metadata with a HEAD at
	// their first lookup (a store whose objects carry none).
	SkipObjectMeta bool
	// ListAheadKeys bounds how many objects below a directory a lookup
	// that found it records in the index ahead of the lookups that follow
	// there (listahead.go); default 10,000, negative turns it off.
	ListAheadKeys int
	// DeleteOneByOne sends each owed delete as a DELETE of its own. By
	// default the deletes upload workers reach together go as one
	// DeleteObjects request (up to 1,000 keys), on stores that have it.
	DeleteOneByOne bool
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
	// ScrubRate bounds the bytes per second the scrub reads to check the
	// cached files against their CRC (scrub.go); 0 turns the scrub off.
	ScrubRate int64
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
	if o.ListAheadKeys == 0 {
		o.ListAheadKeys = 10000
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
