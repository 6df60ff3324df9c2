package main

import (
	"context"
	"errors"
	"io"
	iofs "io/fs"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/objstore"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/s3mediafs/s3mediafs/cache"
)

// metrics holds the daemon's Prometheus instruments.
type metrics struct {
	reg        *prometheus.Registry
	fuseOps    *prometheus.HistogramVec // op, result
	s3Requests *prometheus.HistogramVec // op, outcome
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.fuseOps = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "s3mediafs_fuse_operation_duration_seconds",
		Help:    "FUSE operations served, by operation and result (ok or the errno).",
		Buckets: prometheus.ExponentialBuckets(0.00001, 4, 10),
	}, []string{"op", "result"})
	m.s3Requests = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "s3mediafs_s3_request_duration_seconds",
		Help:    "S3 requests, by operation and outcome (ok, not_found, transient, permanent, canceled).",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
	}, []string{"op", "outcome"})
	m.reg.MustRegister(m.fuseOps, m.s3Requests,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// watch exports the cache's figures.
func (m *metrics) watch(c *cache.Cache) { m.reg.MustRegister(cacheCollector{c}) }

// observeFUSE is the fs package's hook.
func (m *metrics) observeFUSE(op string, d time.Duration, errno syscall.Errno) {
	result := "ok"
	if errno != 0 {
		result = errnoName(errno)
	}
	m.fuseOps.WithLabelValues(op, result).Observe(d.Seconds())
}

func errnoName(e syscall.Errno) string {
	switch e {
	case syscall.ENOENT:
		return "ENOENT"
	case syscall.EEXIST:
		return "EEXIST"
	case syscall.ENOTEMPTY:
		return "ENOTEMPTY"
	case syscall.EIO:
		return "EIO"
	case syscall.ENOSPC:
		return "ENOSPC"
	case syscall.EINTR:
		return "EINTR"
	}
	return "other"
}

// serve serves /metrics on addr until ctx ends, and returns the
// address it listens on.
func (m *metrics) serve(ctx context.Context, addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	context.AfterFunc(ctx, func() { srv.Close() })
	return ln.Addr().String(), nil
}

// cacheCollector exports the cache's status at scrape time.
type cacheCollector struct{ c *cache.Cache }

var (
	descDirtyBytes  = prometheus.NewDesc("s3mediafs_dirty_bytes", "Bytes written locally and not yet in S3.", nil, nil)
	descDirtyLimit  = prometheus.NewDesc("s3mediafs_dirty_limit_bytes", "Bound on bytes not yet in S3 (dirty_max_size; 0: no limit); past it writers wait.", nil, nil)
	descDirtyFiles  = prometheus.NewDesc("s3mediafs_dirty_files", "Files written locally and not yet in S3.", nil, nil)
	descCacheBytes  = prometheus.NewDesc("s3mediafs_cache_bytes", "Bytes of local data files in the cache.", nil, nil)
	descCacheLimit  = prometheus.NewDesc("s3mediafs_cache_limit_bytes", "cache_max_size (0: no limit).", nil, nil)
	descCacheFree   = prometheus.NewDesc("s3mediafs_cache_filesystem_free_bytes", "Free bytes on the cache filesystem.", nil, nil)
	descFreeFloor   = prometheus.NewDesc("s3mediafs_cache_filesystem_min_free_bytes", "The free-space floor (cache_min_free) in bytes.", nil, nil)
	descQueueDepth  = prometheus.NewDesc("s3mediafs_upload_queue_depth", "Paths with an upload or delete owed to S3.", nil, nil)
	descQueueOldest = prometheus.NewDesc("s3mediafs_upload_queue_oldest_seconds", "Age of the oldest owed upload or delete.", nil, nil)
	descHits        = prometheus.NewDesc("s3mediafs_cache_hits_total", "Opens served from the local cache.", nil, nil)
	descMisses      = prometheus.NewDesc("s3mediafs_cache_misses_total", "Files fetched from S3 on a read.", nil, nil)
	descEvictions   = prometheus.NewDesc("s3mediafs_cache_evictions_total", "Clean files evicted from the cache.", nil, nil)
	descBytesUp     = prometheus.NewDesc("s3mediafs_uploaded_bytes_total", "Bytes uploaded to S3.", nil, nil)
	descBytesDown   = prometheus.NewDesc("s3mediafs_downloaded_bytes_total", "Bytes fetched from S3.", nil, nil)
	descUploads     = prometheus.NewDesc("s3mediafs_uploads_total", "Files uploaded to S3.", nil, nil)
	descDeletes     = prometheus.NewDesc("s3mediafs_deletes_total", "Objects deleted from S3.", nil, nil)
	descDeleteBatch = prometheus.NewDesc("s3mediafs_delete_batches_total", "DeleteObjects requests that carried owed deletes.", nil, nil)
	descRmdirChecks = prometheus.NewDesc("s3mediafs_rmdir_checks_total", "Directories removed on the index's word and checked in S3 afterwards.", nil, nil)
	descRmdirBack   = prometheus.NewDesc("s3mediafs_rmdir_reappeared_total", "Removed directories that still held objects this mount did not write (another host's), shown again.", nil, nil)
	descStoreUp     = prometheus.NewDesc("s3mediafs_store_up", "1 while the object store answers; 0 while it counts as down (lookups of unknown names answer absent, uploads wait).", nil, nil)
	descCorrupt     = prometheus.NewDesc("s3mediafs_corrupt_downloads_total", "Downloads whose bytes failed their length or checksum check; each is fetched again, and none is cached.", nil, nil)
	descScrubbed    = prometheus.NewDesc("s3mediafs_scrub_checked_total", "Cached files the scrub read and checked against their checksum.", nil, nil)
	descScrubBad    = prometheus.NewDesc("s3mediafs_scrub_corrupt_total", "Cached files the scrub found damaged and dropped (fetched again on the next read).", nil, nil)
	descErrors      = prometheus.NewDesc("s3mediafs_upload_errors_total", "Failed uploads and deletes, by class.", []string{"class"}, nil)
)

func (cacheCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDirtyBytes, descDirtyLimit, descDirtyFiles, descCacheBytes, descCacheLimit, descCacheFree, descFreeFloor,
		descQueueDepth, descQueueOldest, descHits, descMisses, descEvictions, descBytesUp, descBytesDown,
		descUploads, descDeletes, descDeleteBatch, descErrors, descRmdirChecks, descRmdirBack, descCorrupt, descScrubbed, descScrubBad, descStoreUp} {
		ch <- d
	}
}

func (cc cacheCollector) Collect(ch chan<- prometheus.Metric) {
	s := cc.c.Status()
	g := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	n := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	g(descDirtyBytes, float64(s.DirtyBytes))
	g(descDirtyLimit, float64(s.DirtyMax))
	g(descDirtyFiles, float64(s.DirtyFiles))
	g(descCacheBytes, float64(s.LocalBytes))
	g(descCacheLimit, float64(s.MaxSize))
	g(descCacheFree, float64(s.FreeBytes))
	g(descFreeFloor, float64(s.MinFreeBytes))
	g(descQueueDepth, float64(s.QueueDepth))
	g(descQueueOldest, s.OldestPending)
	n(descHits, s.Hits)
	n(descMisses, s.Misses)
	n(descEvictions, s.Evictions)
	n(descBytesUp, s.UploadedBytes)
	n(descBytesDown, s.FetchedBytes)
	n(descUploads, s.Uploads)
	n(descDeletes, s.Deletes)
	n(descDeleteBatch, s.DeleteBatches)
	ch <- prometheus.MustNewConstMetric(descErrors, prometheus.CounterValue, float64(s.ErrorsTransient), "transient")
	ch <- prometheus.MustNewConstMetric(descErrors, prometheus.CounterValue, float64(s.ErrorsPermanent), "permanent")
	n(descRmdirChecks, s.RmdirChecks)
	n(descRmdirBack, s.RmdirReappeared)
	up := 1.0
	if s.StoreDown {
		up = 0
	}
	g(descStoreUp, up)
	n(descCorrupt, s.CorruptDownloads)
	n(descScrubbed, s.ScrubChecked)
	n(descScrubBad, s.ScrubCorrupt)
}

// instrumentedStore times every S3 request by operation and outcome.
type instrumentedStore struct {
	objstore.Store
	m *metrics
}

func (s instrumentedStore) observe(op string, start time.Time, err error) {
	outcome := "ok"
	switch {
	case err == nil:
	case errors.Is(err, iofs.ErrNotExist):
		outcome = "not_found"
	case errors.Is(err, context.Canceled):
		outcome = "canceled"
	case objstore.IsPermanent(err):
		outcome = "permanent"
	default:
		outcome = "transient"
	}
	s.m.s3Requests.WithLabelValues(op, outcome).Observe(time.Since(start).Seconds())
}

func (s instrumentedStore) Put(ctx context.Context, key string, body io.ReaderAt, size int64, meta map[string]string) (err error) {
	defer func(start time.Time) { s.observe("put", start, err) }(time.Now())
	return s.Store.Put(ctx, key, body, size, meta)
}

func (s instrumentedStore) Copy(ctx context.Context, from, to string, meta map[string]string) (err error) {
	defer func(start time.Time) { s.observe("copy", start, err) }(time.Now())
	return s.Store.Copy(ctx, from, to, meta)
}

func (s instrumentedStore) Get(ctx context.Context, key string, off, n int64) (_ objstore.Body, err error) {
	defer func(start time.Time) { s.observe("get", start, err) }(time.Now())
	return s.Store.Get(ctx, key, off, n)
}

func (s instrumentedStore) Head(ctx context.Context, key string) (_ objstore.Object, err error) {
	defer func(start time.Time) { s.observe("head", start, err) }(time.Now())
	return s.Store.Head(ctx, key)
}

func (s instrumentedStore) Lookup(ctx context.Context, key string, below func(objstore.Entry)) (_ objstore.Found, err error) {
	defer func(start time.Time) { s.observe("lookup", start, err) }(time.Now())
	return s.Store.Lookup(ctx, key, below)
}

func (s instrumentedStore) Delete(ctx context.Context, key string) (err error) {
	defer func(start time.Time) { s.observe("delete", start, err) }(time.Now())
	return s.Store.Delete(ctx, key)
}

// DeleteMany implements objstore.BatchDeleter for a store that has it;
// for one that does not it says so (errors.ErrUnsupported), and the cache
// deletes one key a request.
func (s instrumentedStore) DeleteMany(ctx context.Context, keys []string) (failed map[string]error, err error) {
	bd, err := objstore.BatchDeleterOf(s.Store)
	if err != nil {
		return nil, err
	}
	defer func(start time.Time) { s.observe("delete_objects", start, err) }(time.Now())
	return bd.DeleteMany(ctx, keys)
}

func (s instrumentedStore) List(ctx context.Context, prefix string, recursive bool, fn func(objstore.Entry) bool) (err error) {
	defer func(start time.Time) { s.observe("list", start, err) }(time.Now())
	return s.Store.List(ctx, prefix, recursive, fn)
}
