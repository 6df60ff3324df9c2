package reconcile

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// Bucket is what reconcile needs of the store; *s3.Client has it. Keys
// are relative to the configured prefix, as the mount sees them.
type Bucket interface {
	List(ctx context.Context, prefix string, recursive bool, fn func(objstore.Entry) bool) error
	Head(ctx context.Context, key string) (objstore.Object, error)
	DeleteMany(ctx context.Context, keys []string) (map[string]error, error) // objstore.BatchDeleter's
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
	o.setDefaults()
	tmp, err := newScratch(o.TempDir)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	cutoff := o.Now().Add(-o.MinAge)
	rep := &Report{OrphansByTree: map[string]Tally{}, DryRun: !o.Delete}
	db, objects, local, err := o.readSides(ctx, tmp, rep)
	if err != nil {
		return nil, err
	}
	o.Progress.phase("comparing")
	candidates, err := os.Create(filepath.Join(tmp, "orphans"))
	if err != nil {
		return nil, err
	}
	defer candidates.Close()
	if err := compare(db, objects, local, cutoff, rep, newRecordWriter(candidates)); err != nil {
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

func (o *Options) setDefaults() {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.BatchSize <= 0 || o.BatchSize > 1000 {
		o.BatchSize = 1000
	}
}

// readSides reads the three sides of the comparison, each sorted on disk
// in tmp: the database's keys, the bucket's objects and the local cache's
// files.
func (o *Options) readSides(ctx context.Context, tmp string, rep *Report) (db, objects, local *sortedKeys, err error) {
	o.Progress.phase("reading the database")
	db = newSortedKeys(tmp, o.RunKeys)
	rep.Rows, err = o.DB.Keys(ctx, func(k string) error {
		o.progress(func(p *Progress) { p.Rows.Add(1) })
		return db.Add(keyEscaper.Replace(k))
	})
	if err != nil {
		return nil, nil, nil, err
	}
	o.Progress.phase("listing the bucket")
	objects = newSortedKeys(tmp, o.RunKeys)
	var addErr error
	err = o.Bucket.List(ctx, "", true, func(e objstore.Entry) bool {
		if e.Dir {
			return true
		}
		o.progress(func(p *Progress) { p.Objects.Add(1) })
		addErr = objects.Add(withMeta(e.Name, e.Size, e.MTime.UnixNano()))
		return addErr == nil
	})
	if err = errors.Join(err, addErr); err != nil {
		return nil, nil, nil, fmt.Errorf("list the bucket: %w", err)
	}
	local = newSortedKeys(tmp, o.RunKeys)
	if o.Local != nil {
		o.Progress.phase("reading the local cache")
		err := o.Local(func(p string, size int64) error {
			o.progress(func(p *Progress) { p.LocalFiles.Add(1) })
			return local.Add(withMeta(p, size, 0))
		})
		if err != nil {
			return nil, nil, nil, fmt.Errorf("read the local cache: %w", err)
		}
	}
	return db, objects, local, nil
}

// compare merges the three sides, counts each key into the report, and
// writes the orphans older than cutoff to candidates.
func compare(db, objects, local *sortedKeys, cutoff time.Time, rep *Report, candidates *recordWriter) error {
	err := merge(db, objects, local, func(key string, inDB bool, obj, loc *meta) error {
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
			return candidates.write(withMeta(key, obj.size, obj.mtime))
		}
		return nil
	})
	return errors.Join(err, candidates.flush())
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
