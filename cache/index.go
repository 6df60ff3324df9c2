package cache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"

	"github.com/dgraph-io/badger/v4"
)

// index wraps the Badger database that records every known file and every
// owed upload or delete. All read-modify-write transactions run under
// Cache.mu, so they never conflict with each other.
type index struct {
	db  *badger.DB
	ino *badger.Sequence
}

// rootIno is the inode number of the mount's root directory.
const rootIno = 1

func openIndex(dir string, log *slog.Logger) (*index, error) {
	opts := badger.DefaultOptions(filepath.Join(dir, "index")).
		WithLogger(badgerLogger{log}).
		// Writes reach the OS at commit (they survive a daemon crash); fsync
		// is paid only when a caller asks for it, through Sync.
		WithSyncWrites(false).
		WithNumVersionsToKeep(1).
		WithMemTableSize(16 << 20).
		WithNumMemtables(2).
		WithBlockCacheSize(32 << 20).
		WithIndexCacheSize(16 << 20).
		WithValueThreshold(1 << 10).
		WithCompactL0OnClose(true)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open index in %s: %w (is another s3mediafs using this cache_dir?)", dir, err)
	}
	if err := migrate(db, dir, log); err != nil {
		db.Close()
		return nil, err
	}
	seq, err := db.GetSequence(inoKey, 1024)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open inode sequence: %w", err)
	}
	return &index{db: db, ino: seq}, nil
}

// Index formats:
//
//	1  the first release (no schema key): records of version 1; keys n, p,
//	   h, l, a and s:acct, s:running, s:ino.
//	2  adds hidden trees (t<dir>), owed folder deletes (p<dir>/) and the
//	   root's attributes (s:root). All are new keys only: a format 1
//	   index is a format 2 index as it is.
const schemaVersion = 2

// migrate brings an index of an older format to schemaVersion, or refuses
// one written by a newer release.
func migrate(db *badger.DB, dir string, log *slog.Logger) error {
	return db.Update(func(txn *badger.Txn) error {
		version := uint64(1)
		item, err := txn.Get(schemaKey)
		switch {
		case err == nil:
			if err := item.Value(func(v []byte) error {
				var n int
				version, n = binary.Uvarint(v)
				if n <= 0 || n != len(v) {
					return fmt.Errorf("%w: schema version", errCorruptRecord)
				}
				return nil
			}); err != nil {
				return fmt.Errorf("index in %s: %w", dir, err)
			}
		case !errors.Is(err, badger.ErrKeyNotFound):
			return fmt.Errorf("index in %s: %w", dir, err)
		}
		if version > schemaVersion {
			return fmt.Errorf("the index in %s was written by a newer s3mediafs (index format %d; this release reads up to %d): "+
				"run that release or a later one, or give this one an empty cache_dir once the newer one has flushed everything", dir, version, schemaVersion)
		}
		if version == schemaVersion {
			return nil
		}
		if fresh, err := isEmptyIndex(txn); err != nil {
			return err
		} else if !fresh {
			// 1 → 2 adds key kinds only: nothing to rewrite.
			log.Info("index upgraded", "dir", dir, "from_format", version, "to_format", schemaVersion)
		}
		return txn.Set(schemaKey, binary.AppendUvarint(nil, schemaVersion))
	})
}

func (ix *index) close() error {
	err := ix.ino.Release()
	return errors.Join(err, ix.db.Close())
}

// nextIno allocates a fresh inode number.
func (ix *index) nextIno() (uint64, error) {
	for {
		n, err := ix.ino.Next()
		if err != nil {
			return 0, err
		}
		if n > rootIno {
			return n, nil
		}
	}
}

// getRecord reads the record at path p; ok is false when there is none.
func getRecord(txn *badger.Txn, p string) (record, bool, error) {
	item, err := txn.Get(entryKey(p))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return record{}, false, nil
	}
	if err != nil {
		return record{}, false, err
	}
	var r record
	err = item.Value(func(v []byte) error {
		var derr error
		r, derr = decodeRecord(v)
		return derr
	})
	if err != nil {
		return record{}, false, fmt.Errorf("index entry %q: %w", p, err)
	}
	return r, true, nil
}

func putRecord(txn *badger.Txn, p string, r record) error {
	return txn.Set(entryKey(p), r.encode())
}

func deleteRecord(txn *badger.Txn, p string) error {
	return txn.Delete(entryKey(p))
}

func hasPending(txn *badger.Txn, p string) (bool, error) {
	_, err := txn.Get(pendingKey(p))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}

func setPending(txn *badger.Txn, p string) error   { return txn.Set(pendingKey(p), nil) }
func clearPending(txn *badger.Txn, p string) error { return txn.Delete(pendingKey(p)) }

// isHidden reports whether the object at p is hidden: by a key of its own
// or by a removed directory at or above it.
func isHidden(txn *badger.Txn, p string) (bool, error) {
	if ok, err := hasKey(txn, hiddenKey(p)); ok || err != nil {
		return ok, err
	}
	for d := p; d != ""; d = parentOf(d) {
		if ok, err := hasKey(txn, hiddenTreeKey(d)); ok || err != nil {
			return ok, err
		}
	}
	return false, nil
}

// hideTree hides everything the store holds below the directory p, in
// place of the hidden keys below it, which go in batches of their own
// (removeHiddenBelow).
func hideTree(txn *badger.Txn, p string) error { return txn.Set(hiddenTreeKey(p), nil) }

func hasKey(txn *badger.Txn, k []byte) (bool, error) {
	_, err := txn.Get(k)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}

// goneHere reports a key removed through this mount whose object the store
// may still hold: a tombstone (delete owed) or a hidden key (kept by
// choice). Lookups and listings treat it as absent.
func goneHere(txn *badger.Txn, p string) (bool, error) {
	if _, ok, err := getRecord(txn, p); ok || err != nil {
		return false, err
	}
	if pend, err := hasPending(txn, p); pend || err != nil {
		return pend, err
	}
	return isHidden(txn, p)
}

// forChildren calls fn for each direct child of dir, in name order.
func forChildren(txn *badger.Txn, dir string, fn func(name string, r record) error) error {
	return forChildrenFrom(txn, dir, "", fn)
}

// errStopIteration ends a forChildren walk early without an error.
var errStopIteration = errors.New("stop iteration")

// forChildrenFrom is forChildren starting at the name from; fn may end
// the walk by returning errStopIteration.
func forChildrenFrom(txn *badger.Txn, dir, from string, fn func(name string, r record) error) error {
	prefix := childrenPrefix(dir)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 64})
	defer it.Close()
	for it.Seek(append(slices.Clip(prefix), from...)); it.Valid(); it.Next() {
		item := it.Item()
		name := string(item.Key()[len(prefix):])
		var r record
		err := item.Value(func(v []byte) error {
			var derr error
			r, derr = decodeRecord(v)
			return derr
		})
		if err != nil {
			return fmt.Errorf("index entry %q: %w", joinPath(dir, name), err)
		}
		if err := fn(name, r); err != nil {
			if errors.Is(err, errStopIteration) {
				return nil
			}
			return err
		}
	}
	return nil
}

// hasChildren reports whether dir has any child in the index.
func hasChildren(txn *badger.Txn, dir string) (bool, error) {
	prefix := childrenPrefix(dir)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	it.Rewind()
	return it.Valid(), nil
}

// hasGoneBelow reports whether any owed work or hidden key lies below dir.
func hasGoneBelow(txn *badger.Txn, dir string) bool {
	for _, pk := range []byte{pendingPrefix, hiddenPrefix, hiddenTreePrefix} {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: belowPrefix(pk, dir)})
		it.Rewind()
		found := it.Valid()
		it.Close()
		if found {
			return true
		}
	}
	return false
}

// hasPendingBelow reports whether work is owed on any key below the folder
// key k ("dir/"), other than k itself.
func hasPendingBelow(txn *badger.Txn, k string) bool {
	prefix := pendingKey(k)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		if len(it.Item().Key()) > len(prefix) {
			return true
		}
	}
	return false
}

// belowPrefix is the key prefix of everything below dir under key kind pk.
func belowPrefix(pk byte, dir string) []byte {
	if dir == "" {
		return []byte{pk}
	}
	return append(append([]byte{pk}, dir...), '/')
}

// owedBelow returns the paths below dir whose delete is owed. It is read
// before a LIST starts: one of them may complete while the LIST is
// answered, and its key must still count as gone. Hidden keys need no
// such care (they stay), and are checked key by key (goneHere), so that
// this costs what the upload queue holds, not what was ever removed.
func owedBelow(txn *badger.Txn, dir string) (map[string]bool, error) {
	var paths []string
	prefix := belowPrefix(pendingPrefix, dir)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	for it.Rewind(); it.Valid(); it.Next() {
		paths = append(paths, string(it.Item().Key()[1:]))
	}
	it.Close()
	out := make(map[string]bool, len(paths))
	for _, p := range paths {
		if _, ok, err := getRecord(txn, p); err != nil {
			return nil, err
		} else if !ok {
			out[p] = true
		}
	}
	return out, nil
}

// isEmptyIndex reports whether the index holds no key at all: a new one.
func isEmptyIndex(txn *badger.Txn) (bool, error) {
	it := txn.NewIterator(badger.IteratorOptions{})
	defer it.Close()
	it.Rewind()
	return !it.Valid(), nil
}

// markRunning records that the index is in use and reports whether the
// previous run stopped without closing it.
func (ix *index) markRunning() (unclean bool, err error) {
	err = ix.db.Update(func(txn *badger.Txn) error {
		_, gerr := txn.Get(runningKey)
		switch {
		case gerr == nil:
			unclean = true
		case !errors.Is(gerr, badger.ErrKeyNotFound):
			return gerr
		}
		return txn.Set(runningKey, nil)
	})
	if err == nil {
		err = ix.db.Sync()
	}
	return unclean, err
}

// markStopped records a clean stop.
func (ix *index) markStopped() error {
	return ix.db.Update(func(txn *badger.Txn) error { return txn.Delete(runningKey) })
}

// forPending calls fn for every path with an owed upload or delete.
func (ix *index) forPending(fn func(p string)) error {
	return ix.db.View(func(txn *badger.Txn) error {
		prefix := []byte{pendingPrefix}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			fn(string(it.Item().Key()[1:]))
		}
		return nil
	})
}

// badgerLogger routes Badger's logging into slog, at levels one below
// Badger's own so routine compaction chatter stays out of an operator's log.
type badgerLogger struct{ log *slog.Logger }

func (l badgerLogger) Errorf(f string, a ...any)   { l.log.Error("badger: " + fmt.Sprintf(f, a...)) }
func (l badgerLogger) Warningf(f string, a ...any) { l.log.Warn("badger: " + fmt.Sprintf(f, a...)) }
func (l badgerLogger) Infof(f string, a ...any)    { l.log.Debug("badger: " + fmt.Sprintf(f, a...)) }
func (l badgerLogger) Debugf(f string, a ...any)   {}

// isDirIn reports whether p is the root or a directory in the index.
func isDirIn(txn *badger.Txn, p string) (bool, error) {
	if p == "" {
		return true, nil
	}
	r, ok, err := getRecord(txn, p)
	return ok && r.Dir, err
}
