package cache

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/index"
)

// counters are the cache's running totals since start, for status and
// metrics. Atomic: they are bumped on hot paths without a lock.
type counters struct {
	hits, misses, evictions    atomic.Uint64
	corrupt                    atomic.Uint64 // downloads that failed their check (verify.go)
	scrubbed, scrubCorrupt     atomic.Uint64 // cached files checked by the scrub, and dropped by it
	uploads, deletes           atomic.Uint64
	bytesUp, bytesDown         atomic.Uint64
	errTransient, errPermanent atomic.Uint64

	mu        sync.Mutex // guards lastErr, lastErrAt
	lastErr   string
	lastErrAt time.Time
}

func (s *counters) storeError(err error, permanent bool) {
	if permanent {
		s.errPermanent.Add(1)
	} else {
		s.errTransient.Add(1)
	}
	s.mu.Lock()
	s.lastErr, s.lastErrAt = err.Error(), time.Now()
	s.mu.Unlock()
}

// Status is a snapshot of what the cache holds and does.
type Status struct {
	DirtyFiles int64 `json:"dirty_files"`
	DirtyBytes int64 `json:"dirty_bytes"`
	DirtyMax   int64 `json:"dirty_max_bytes"` // 0: no limit
	LocalBytes int64 `json:"cache_bytes"`
	MaxSize    int64 `json:"cache_max_bytes"` // 0: no limit
	FreeBytes  int64 `json:"cache_fs_free_bytes"`
	// MinFreeBytes is the free-space floor (cache_min_free) in bytes.
	MinFreeBytes int64 `json:"cache_fs_min_free_bytes"`

	QueueDepth    int     `json:"queue_depth"`         // paths with an upload or delete owed
	OldestPending float64 `json:"oldest_pending_secs"` // age of the oldest owed upload or delete

	Uploads       uint64 `json:"uploads"`
	UploadedBytes uint64 `json:"uploaded_bytes"`
	Deletes       uint64 `json:"deletes"`
	// DeleteBatches counts the DeleteObjects requests that carried them.
	DeleteBatches uint64 `json:"delete_batches"`
	Hits          uint64 `json:"hits"`
	Misses        uint64 `json:"misses"`
	FetchedBytes  uint64 `json:"fetched_bytes"`
	Evictions     uint64 `json:"evictions"`
	// IndexUpdates and IndexReads count index transactions (read-write
	// and read-only), the unit of the cache's per-operation cost.
	IndexUpdates uint64 `json:"index_updates"`
	IndexReads   uint64 `json:"index_reads"`
	// Fetches is the number of downloads into the cache in flight.
	Fetches int `json:"fetches_in_flight"`

	// CorruptDownloads counts downloads whose bytes failed their length
	// or checksum check (each is tried again); ScrubChecked, the cached
	// files the scrub read; ScrubCorrupt, those it found damaged and
	// dropped.
	CorruptDownloads uint64 `json:"corrupt_downloads"`
	ScrubChecked     uint64 `json:"scrub_checked"`
	ScrubCorrupt     uint64 `json:"scrub_corrupt"`

	// RmdirChecks counts directories removed on the index's word and then
	// checked in the store; RmdirReappeared, those that still held objects
	// this mount did not write and show again; RmdirChecksWaiting, those
	// not checked yet.
	RmdirChecks        uint64 `json:"rmdir_checks"`
	RmdirReappeared    uint64 `json:"rmdir_reappeared"`
	RmdirChecksWaiting int    `json:"rmdir_checks_waiting"`

	// StoreDown: the store does not answer; lookups of unknown names
	// answer "absent" and owed uploads wait (the circuit breaker).
	StoreDown bool `json:"store_down"`

	ErrorsTransient uint64    `json:"store_errors_transient"`
	ErrorsPermanent uint64    `json:"store_errors_permanent"`
	LastError       string    `json:"last_store_error,omitempty"`
	LastErrorAt     time.Time `json:"last_store_error_at,omitzero"`
}

// Status returns the current figures.
func (c *Cache) Status() Status {
	c.mu.Lock()
	s := Status{DirtyFiles: c.dirtyFiles, DirtyBytes: c.dirty, LocalBytes: c.used, MaxSize: c.opts.MaxSize, DirtyMax: c.opts.DirtyMax, Fetches: len(c.downloads)}
	c.mu.Unlock()
	var total int64
	s.FreeBytes, total = c.data.Free(false)
	s.MinFreeBytes = c.minFree(total)
	var oldest time.Duration
	s.QueueDepth, oldest = c.q.Depth()
	s.OldestPending = oldest.Seconds()
	st := &c.stats
	s.Uploads, s.UploadedBytes, s.Deletes = st.uploads.Load(), st.bytesUp.Load(), st.deletes.Load()
	s.Hits, s.Misses, s.FetchedBytes, s.Evictions = st.hits.Load(), st.misses.Load(), st.bytesDown.Load(), st.evictions.Load()
	s.ErrorsTransient, s.ErrorsPermanent = st.errTransient.Load(), st.errPermanent.Load()
	s.IndexReads, s.IndexUpdates = c.ix.Transactions()
	s.DeleteBatches = c.deletes.requests.Load()
	s.StoreDown = c.storeIsDown()
	s.CorruptDownloads, s.ScrubChecked, s.ScrubCorrupt = st.corrupt.Load(), st.scrubbed.Load(), st.scrubCorrupt.Load()
	s.RmdirChecks, s.RmdirReappeared, s.RmdirChecksWaiting = c.rmdirChecks.done.Load(), c.rmdirChecks.back.Load(), c.rmdirChecks.waiting()
	st.mu.Lock()
	s.LastError, s.LastErrorAt = st.lastErr, st.lastErrAt
	st.mu.Unlock()
	return s
}

// Flush waits until everything owed when it was called (uploads and
// deletes) has reached the store, or ctx ends; it returns how many of
// those paths are still owed. Work that arrives later does not hold it up.
func (c *Cache) Flush(ctx context.Context) (int, error) {
	var owed []string
	if err := c.ix.ForPending(func(p string) { owed = append(owed, p) }); err != nil {
		return 0, err
	}
	for {
		wake := c.uploadsDone.C()
		// Done ones are dropped from the front up to the first still
		// owed: one upload's end then costs a look or two, not a look
		// at every path still owed.
		err := c.ix.View(func(txn index.View) error {
			for len(owed) > 0 {
				pending, err := txn.HasPending(owed[0])
				if err != nil || pending {
					return err
				}
				owed = owed[1:]
			}
			return nil
		})
		if err != nil {
			return len(owed), err
		}
		if len(owed) == 0 {
			return 0, nil
		}
		select {
		case <-wake:
		case <-time.After(250 * time.Millisecond):
		case <-ctx.Done():
			return c.stillOwed(owed), ctx.Err()
		}
	}
}

// stillOwed counts the paths of owed that still owe the store.
func (c *Cache) stillOwed(owed []string) int {
	n := 0
	if err := c.ix.View(func(txn index.View) error {
		for _, p := range owed {
			if pending, err := txn.HasPending(p); err != nil || pending {
				n++ // a path not read counts as owed
			}
		}
		return nil
	}); err != nil {
		return len(owed)
	}
	return n
}
