package reconcile

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Bucket is what reconcile needs of the store; *s3.Client has it. Keys
// are relative to the configured prefix, as the mount sees them.
type Bucket interface {
	List(ctx context.Context, prefix string, recursive bool, fn func(key string, size int64, mtime time.Time, dir bool) bool) error
	Head(ctx context.Context, key string) (int64, time.Time, map[string]string, error)
	DeleteMany(ctx context.Context, keys []string) (map[string]error, error)
}

// LocalFiles calls fn for every file whose bytes are in the local cache
// and not (yet) in the bucket: owed uploads, and trees kept local.
type LocalFiles func(fn func(path string, size int64) error) error

// Options configures a run.
type Options struct {
	DB     *Source
	Bucket Bucket
	Local  LocalFiles // nil: no cache to consult
	// TempDir holds the sorted runs; it is removed at the end.
	TempDir string
	// MinAge spares objects modified more recently: Synapse writes a file
	// before it commits its row, so a new upload looks orphaned briefly.
	MinAge time.Duration
	// Delete removes the orphans; without it the run only reports.
	Delete bool
	// DeletedLog receives one line per deleted object; it is synced after
	// every batch. Keys are written with KeyPrefix in front: the bucket's
	// own keys, as a restore from versioning or a backup needs them.
	DeletedLog *os.File
	KeyPrefix  string
	// Concurrency is the number of delete batches in flight; default 4.
	Concurrency int
	// BatchSize is the keys per DeleteObjects request; default 1000.
	BatchSize int
	// RunKeys bounds the keys held in memory per sorted run.
	RunKeys int
	// Progress, if set, is updated as the run goes.
	Progress *Progress
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Progress counts a run's work as it happens, for a progress line.
type Progress struct {
	Rows, Objects, LocalFiles, Deleted atomic.Int64
	Phase                              atomic.Value // string
}

func (p *Progress) phase(s string) {
	if p != nil {
		p.Phase.Store(s)
	}
}

// Tally is a count of objects and their bytes.
type Tally struct {
	Count int64 `json:"count"`
	Bytes int64 `json:"bytes"`
}

func (t *Tally) add(size int64) { t.Count++; t.Bytes += size }

// Report is what a run found and did.
type Report struct {
	// Orphans are objects in Synapse's trees that no row accounts for,
	// older than MinAge.
	Orphans       Tally            `json:"orphans"`
	OrphansByTree map[string]Tally `json:"orphans_by_tree"`
	// InGrace are orphans younger than MinAge: kept, reported apart.
	InGrace Tally `json:"orphans_in_grace"`
	// Missing are rows whose file is neither in the bucket nor in the
	// local cache; MissingKeys holds the first of them.
	Missing     Tally    `json:"missing"`
	MissingKeys []string `json:"missing_examples,omitempty"`
	// LocalOnly are files in the local cache and not in the bucket.
	LocalOnly Tally `json:"local_only"`
	// Matched are rows whose object is in the bucket.
	Matched Tally `json:"matched"`
	// Foreign are objects outside Synapse's trees: never Synapse's, never
	// deleted.
	Foreign Tally     `json:"foreign"`
	Rows    RowCounts `json:"rows"`

	DryRun  bool  `json:"dry_run"`
	Deleted Tally `json:"deleted"`
	// KeptOwned are orphans the database gained a row for before their
	// delete; KeptChanged were rewritten since the listing.
	KeptOwned    int64 `json:"kept_gained_row"`
	KeptChanged  int64 `json:"kept_rewritten"`
	DeleteFailed int64 `json:"delete_failed"`
}

// maxMissingExamples bounds the missing keys a report lists.
const maxMissingExamples = 20

// Run compares the bucket with the database (and the local cache) and,
// with Delete, removes the orphans.
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.BatchSize <= 0 || o.BatchSize > 1000 {
		o.BatchSize = 1000
	}
	tmp, err := os.MkdirTemp(o.TempDir, "s3mediafs-reconcile-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	cutoff := o.Now().Add(-o.MinAge)
	rep := &Report{OrphansByTree: map[string]Tally{}, DryRun: !o.Delete}

	// The three sides, each sorted on disk.
	o.Progress.phase("reading the database")
	db := newSortedKeys(tmp, o.RunKeys)
	rep.Rows, err = o.DB.Keys(ctx, func(k string) error {
		o.progress(func(p *Progress) { p.Rows.Add(1) })
		return db.Add(keyEscaper.Replace(k))
	})
	if err != nil {
		return nil, err
	}
	o.Progress.phase("listing the bucket")
	objects := newSortedKeys(tmp, o.RunKeys)
	var addErr error
	err = o.Bucket.List(ctx, "", true, func(key string, size int64, mtime time.Time, dir bool) bool {
		if dir {
			return true
		}
		o.progress(func(p *Progress) { p.Objects.Add(1) })
		addErr = objects.Add(withMeta(key, size, mtime.UnixNano()))
		return addErr == nil
	})
	if err = errors.Join(err, addErr); err != nil {
		return nil, fmt.Errorf("list the bucket: %w", err)
	}
	local := newSortedKeys(tmp, o.RunKeys)
	if o.Local != nil {
		o.Progress.phase("reading the local cache")
		err := o.Local(func(p string, size int64) error {
			o.progress(func(p *Progress) { p.LocalFiles.Add(1) })
			return local.Add(withMeta(p, size, 0))
		})
		if err != nil {
			return nil, fmt.Errorf("read the local cache: %w", err)
		}
	}

	o.Progress.phase("comparing")
	candidates, err := os.Create(filepath.Join(tmp, "orphans"))
	if err != nil {
		return nil, err
	}
	defer candidates.Close()
	cw := newRecordWriter(candidates)
	err = merge(db, objects, local, func(key string, inDB bool, obj, loc *meta) error {
		switch {
		case loc != nil && obj == nil:
			rep.LocalOnly.add(loc.size)
		case inDB && obj != nil:
			rep.Matched.add(obj.size)
		case inDB:
			rep.Missing.add(0)
			if len(rep.MissingKeys) < maxMissingExamples {
				rep.MissingKeys = append(rep.MissingKeys, key)
			}
		case obj != nil && loc != nil:
			// Not in the database, but the cache holds a copy it owes
			// the bucket: Synapse is writing it now.
		case obj != nil && !slices.Contains(Trees, treeOf(key)):
			rep.Foreign.add(obj.size)
		case obj != nil && time.Unix(0, obj.mtime).After(cutoff):
			rep.InGrace.add(obj.size)
		case obj != nil:
			rep.Orphans.add(obj.size)
			t := rep.OrphansByTree[treeOf(key)]
			t.add(obj.size)
			rep.OrphansByTree[treeOf(key)] = t
			return cw.write(withMeta(key, obj.size, obj.mtime))
		}
		return nil
	})
	if err = errors.Join(err, cw.flush()); err != nil {
		return nil, err
	}
	if !o.Delete {
		return rep, nil
	}
	o.Progress.phase("deleting orphans")
	if _, err := candidates.Seek(0, 0); err != nil {
		return nil, err
	}
	return rep, o.deleteOrphans(ctx, bufio.NewReaderSize(candidates, 256<<10), cutoff, rep)
}

func (o *Options) progress(fn func(*Progress)) {
	if o.Progress != nil {
		fn(o.Progress)
	}
}

// meta is an object's or a local file's size and modification time.
type meta struct {
	size, mtime int64
}

// withMeta is a key as the sorted runs hold it: the key escaped so that
// it holds no NUL (NUL becomes \x01\x01, \x01 becomes \x01\x02, which
// keeps the order of keys), then a NUL and its size and mtime in hex. An
// entry sorts where its key does ("a" before "a/b", NUL being lowest),
// whatever bytes a key holds: object keys come from the bucket, and a
// hostile one must not reorder the merge.
func withMeta(key string, size, mtime int64) string {
	return fmt.Sprintf("%s\x00%x\x00%x", keyEscaper.Replace(key), size, mtime)
}

var (
	keyEscaper   = strings.NewReplacer("\x01", "\x01\x02", "\x00", "\x01\x01")
	keyUnescaper = strings.NewReplacer("\x01\x02", "\x01", "\x01\x01", "\x00")
)

// splitMeta undoes withMeta; an entry without meta (a database key) is
// the key alone.
func splitMeta(e string) (string, meta, error) {
	key, rest, ok := strings.Cut(e, "\x00")
	key = keyUnescaper.Replace(key)
	if !ok {
		return key, meta{}, nil
	}
	var m meta
	if _, err := fmt.Sscanf(strings.Replace(rest, "\x00", " ", 1), "%x %x", &m.size, &m.mtime); err != nil {
		return "", meta{}, fmt.Errorf("reconcile: bad entry %q: %w", e, err)
	}
	return key, m, nil
}

// stream is one sorted side of the merge.
type stream struct {
	it   *keyIter
	key  string
	meta meta
	ok   bool
	err  error
}

func (s *stream) next() {
	var e string
	e, s.ok = s.it.Next()
	if !s.ok {
		s.err = s.it.Err()
		return
	}
	s.key, s.meta, s.err = splitMeta(e)
	if s.err != nil {
		s.ok = false
	}
}

// merge walks the union of the three sorted sides in key order.
func merge(db, objects, local *sortedKeys, fn func(key string, inDB bool, obj, loc *meta) error) error {
	var sides [3]*stream
	for i, s := range []*sortedKeys{db, objects, local} {
		it, err := s.Sorted()
		if err != nil {
			return err
		}
		defer it.Close()
		defer s.Remove()
		sides[i] = &stream{it: it}
		sides[i].next()
	}
	for {
		key, any := "", false
		for _, s := range sides {
			if s.ok && (!any || s.key < key) {
				key, any = s.key, true
			}
		}
		if !any {
			break
		}
		var here [3]bool
		for i, s := range sides {
			here[i] = s.ok && s.key == key
		}
		var obj, loc *meta
		if here[1] {
			m := sides[1].meta
			obj = &m
		}
		if here[2] {
			m := sides[2].meta
			loc = &m
		}
		if err := fn(key, here[0], obj, loc); err != nil {
			return err
		}
		for i, s := range sides {
			if here[i] {
				s.next()
			}
		}
	}
	for _, s := range sides {
		if s.err != nil {
			return s.err
		}
	}
	return nil
}

// orphan is a key to delete, with what the listing said of it.
type orphan struct {
	key string
	meta
}

// logged is one line of the deleted-keys log.
type logged struct {
	key  string
	size int64
	note string
}

func doomed2log(os []orphan) []logged {
	l := make([]logged, len(os))
	for i, o := range os {
		l[i] = logged{o.key, o.size, ""}
	}
	return l
}

// logDeleted appends lines to the deleted-keys log and syncs it: time,
// key, size, and a note for a key that turned out not deleted.
func (o *Options) logDeleted(lines []logged) error {
	if o.DeletedLog == nil || len(lines) == 0 {
		return nil
	}
	w := bufio.NewWriter(o.DeletedLog)
	now := o.Now().UTC().Format(time.RFC3339)
	for _, l := range lines {
		if l.note != "" {
			fmt.Fprintf(w, "%s\t%s%s\t%d\t%s\n", now, o.KeyPrefix, l.key, l.size, l.note)
		} else {
			fmt.Fprintf(w, "%s\t%s%s\t%d\n", now, o.KeyPrefix, l.key, l.size)
		}
	}
	if err := errors.Join(w.Flush(), o.DeletedLog.Sync()); err != nil {
		return fmt.Errorf("deleted-keys log: %w", err)
	}
	return nil
}

// deleteOrphans removes the listed orphans in batches. Before each
// DeleteObjects it asks the database again, in a fresh transaction, and
// keeps any key that gained a row; then it asks the bucket (HEAD) and
// keeps any object rewritten since the listing. A run killed midway
// is resumed by running it again: what was deleted is no longer listed.
func (o *Options) deleteOrphans(ctx context.Context, candidates *bufio.Reader, cutoff time.Time, rep *Report) error {
	batches := make(chan []orphan)
	var mu sync.Mutex // guards rep and the log
	var firstErr error
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for range o.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for batch := range batches {
				keys := make([]string, len(batch))
				for i, b := range batch {
					keys[i] = b.key
				}
				owned, err := o.DB.Owned(ctx, keys)
				if err != nil {
					fail(err)
					continue
				}
				var doomed []orphan
				var changed int64
				for _, b := range batch {
					if owned[b.key] {
						continue
					}
					_, mtime, _, err := o.Bucket.Head(ctx, b.key)
					switch {
					case errors.Is(err, iofs.ErrNotExist):
						continue // gone already
					case err != nil:
						fail(err)
						continue
					case mtime.After(cutoff): // rewritten since the listing
						changed++
						continue
					}
					doomed = append(doomed, b)
				}
				// The keys go to the log before the request: a run killed
				// between the two has logged a key it may not have deleted
				// (the next run deletes and logs it again), never the
				// other way round.
				mu.Lock()
				rep.KeptOwned += int64(len(owned))
				rep.KeptChanged += changed
				err = o.logDeleted(doomed2log(doomed))
				mu.Unlock()
				if err != nil {
					fail(err)
					continue
				}
				var failed map[string]error
				if len(doomed) > 0 {
					dk := make([]string, len(doomed))
					for i, d := range doomed {
						dk[i] = d.key
					}
					if failed, err = o.Bucket.DeleteMany(ctx, dk); err != nil {
						fail(err)
						continue
					}
				}
				mu.Lock()
				var notDeleted []logged
				for _, d := range doomed {
					if e := failed[d.key]; e != nil {
						rep.DeleteFailed++
						notDeleted = append(notDeleted, logged{d.key, d.size, "not deleted: " + e.Error()})
						continue
					}
					rep.Deleted.add(d.size)
					o.progress(func(p *Progress) { p.Deleted.Add(1) })
				}
				if err := o.logDeleted(notDeleted); err != nil {
					fail(err)
				}
				mu.Unlock()
			}
		}()
	}
	var batch []orphan
	var scanErr error
	for ctx.Err() == nil {
		e, ok, err := readRecord(candidates)
		if err != nil || !ok {
			scanErr = err
			break
		}
		key, m, err := splitMeta(e)
		if err != nil {
			scanErr = err
			break
		}
		batch = append(batch, orphan{key, m})
		if len(batch) == o.BatchSize {
			batches <- batch
			batch = nil
		}
		mu.Lock()
		stop := firstErr != nil
		mu.Unlock()
		if stop {
			break
		}
	}
	if len(batch) > 0 && ctx.Err() == nil {
		batches <- batch
	}
	close(batches)
	wg.Wait()
	return errors.Join(firstErr, scanErr, ctx.Err())
}
