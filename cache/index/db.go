package index

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
)

// DB is the Badger database that records every known file and every owed
// upload or delete. Its users run all read-modify-write transactions under
// one lock of their own, so they never conflict with each other.
type DB struct {
	db    *badger.DB
	ino   *badger.Sequence
	guard *spaceGuard // nil when read-only

	// reads and updates count the transactions callers ran (View,
	// Update), for the performance budget.
	reads, updates atomic.Uint64
}

// Transactions reports how many read-only and read-write transactions
// callers have run.
func (ix *DB) Transactions() (reads, updates uint64) { return ix.reads.Load(), ix.updates.Load() }

// RootIno is the inode number of the mount's root directory.
const RootIno = 1

// Open opens (or makes) the index in dir/index, upgrading an older format
// in place. One process at a time may hold it.
func Open(dir string, log *slog.Logger) (*DB, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	guard, memTable, err := prepareSpace(dir, log)
	if err != nil {
		return nil, err
	}
	opts := badger.DefaultOptions(filepath.Join(dir, "index")).
		WithLogger(badgerLogger{log}).
		// Writes reach the OS at commit (they survive a daemon crash); fsync
		// is paid only when a caller asks for it, through Sync.
		WithSyncWrites(false).
		WithNumVersionsToKeep(1).
		WithMemTableSize(memTable).
		WithNumMemtables(2).
		WithBlockCacheSize(32 << 20).
		WithIndexCacheSize(16 << 20).
		// Records stay in the tree; the value log (mapped, and allocated
		// whole: see space.go) is kept small.
		WithValueThreshold(64 << 10).
		WithValueLogFileSize(1 << 20).
		WithCompactL0OnClose(true)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open index in %s: %w (is another s3mediafs using this cache_dir?)", dir, err)
	}
	if err := guard.start(); err != nil {
		db.Close()
		return nil, err
	}
	ix := &DB{db: db, guard: guard}
	if err := migrate(ix, dir, log); err != nil {
		ix.Close()
		return nil, err
	}
	seq, err := db.GetSequence(inoKey, 1024)
	if err != nil {
		ix.Close()
		return nil, fmt.Errorf("open inode sequence: %w", err)
	}
	ix.ino = seq
	return ix, nil
}

// update is Badger's Update, refused with ErrFull while the filesystem
// lacks the room the index may need (space.go). Every write of the index
// goes through it.
func (ix *DB) update(fn func(txn *badger.Txn) error) error { return ix.updateAbove(false, fn) }

// updateAbove is update for a write that makes room when freeing is true
// (see spaceGuard.admitAbove).
func (ix *DB) updateAbove(freeing bool, fn func(txn *badger.Txn) error) error {
	if err := ix.guard.admitAbove(freeing); err != nil {
		return err
	}
	return ix.db.Update(fn)
}

// BatchLimit is how many items, each writing up to perItem keys, one
// transaction may take: well under Badger's limit for this index's
// memtable size, and at most 1000.
func (ix *DB) BatchLimit(perItem int) int {
	return int(min(max(ix.db.MaxBatchCount()/int64(2*perItem), 16), 1000))
}

// Index formats:
//
//	1  the first release (no schema key): records of version 1; keys n, p,
//	   h, l, a and s:acct, s:running, s:ino.
//	2  adds hidden trees (t<dir>), owed folder deletes (p<dir>/) and the
//	   root's attributes (s:root). All are new keys only: a format 1
//	   index is a format 2 index as it is.
//	3  records of version 3 (a CRC-32C of the bytes). Older records are
//	   read as they are; the format is raised so that a release before it
//	   refuses the index whole instead of meeting records it cannot read.
const SchemaVersion = 4

// migrate brings an index of an older format to SchemaVersion, or refuses
// one written by a newer release.
func migrate(ix *DB, dir string, log *slog.Logger) error {
	// Read first: a current index needs no write, so it opens on a full
	// filesystem too.
	current := false
	if err := ix.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(SchemaKey)
		if err != nil {
			return nil
		}
		return item.Value(func(v []byte) error {
			version, n := binary.Uvarint(v)
			current = n > 0 && n == len(v) && version == SchemaVersion
			return nil
		})
	}); err != nil {
		return fmt.Errorf("index in %s: %w", dir, err)
	}
	if current {
		return nil
	}
	// 3 → 4 adds the inode keys (InodeKey) of every record; rewriting them
	// all is idempotent, so a start cut off here does it again.
	if err := backfillInodes(ix); err != nil {
		return fmt.Errorf("index in %s: adding inode keys: %w", dir, err)
	}
	return ix.update(func(txn *badger.Txn) error {
		version := uint64(1)
		item, err := txn.Get(SchemaKey)
		switch {
		case err == nil:
			if err := item.Value(func(v []byte) error {
				var n int
				version, n = binary.Uvarint(v)
				if n <= 0 || n != len(v) {
					return fmt.Errorf("%w: schema version", ErrCorrupt)
				}
				return nil
			}); err != nil {
				return fmt.Errorf("index in %s: %w", dir, err)
			}
		case !errors.Is(err, badger.ErrKeyNotFound):
			return fmt.Errorf("index in %s: %w", dir, err)
		}
		if version > SchemaVersion {
			return fmt.Errorf("the index in %s was written by a newer s3mediafs (index format %d; this release reads up to %d): "+
				"run that release or a later one, or give this one an empty cache_dir once the newer one has flushed everything", dir, version, SchemaVersion)
		}
		if version == SchemaVersion {
			return nil
		}
		if fresh, err := isEmptyIndex(txn); err != nil {
			return err
		} else if !fresh {
			// 1 → 2 adds key kinds only, 2 → 3 a record version that is
			// read beside the older ones, 3 → 4 keys backfilled above.
			log.Info("index upgraded", "dir", dir, "from_format", version, "to_format", SchemaVersion)
		}
		return txn.Set(SchemaKey, binary.AppendUvarint(nil, SchemaVersion))
	})
}

// backfillInodes writes the inode key of every record, in batches that
// fit Badger's transaction limits.
func backfillInodes(ix *DB) error {
	wb := ix.db.NewWriteBatch()
	defer wb.Cancel()
	err := ix.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{entryPrefix}, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var r Record
			if err := it.Item().Value(func(v []byte) (err error) { r, err = Decode(v); return err }); err != nil {
				return err
			}
			if err := wb.Set(InodeKey(r.Ino), []byte(PathOfEntryKey(it.Item().Key()))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return wb.Flush()
}

// Close releases the inode sequence and closes the database.
func (ix *DB) Close() error {
	defer ix.guard.close()
	if !ix.guard.roomToClose() {
		// Closing flushes the memtable to a table, through a map, into
		// space the filesystem does not have. Everything committed is in
		// the log on disk already (written through a shared map, in the
		// page cache, allocated), and the next start replays it.
		ix.guard.log.Error("the cache filesystem is full: the index is left for the next start to replay rather than closed",
			"dir", ix.guard.dir)
		return nil
	}
	if ix.ino == nil {
		return ix.db.Close()
	}
	err := ix.ino.Release()
	return errors.Join(err, ix.db.Close())
}

// NextIno allocates a fresh inode number.
func (ix *DB) NextIno() (uint64, error) {
	// The sequence writes a new lease now and then.
	if err := ix.guard.admit(); err != nil {
		return 0, err
	}
	for {
		n, err := ix.ino.Next()
		if err != nil {
			return 0, err
		}
		if n > RootIno {
			return n, nil
		}
	}
}

// isEmptyIndex reports whether the index holds no key at all: a new one.
func isEmptyIndex(txn *badger.Txn) (bool, error) {
	it := txn.NewIterator(badger.IteratorOptions{})
	defer it.Close()
	it.Rewind()
	return !it.Valid(), nil
}

// MarkRunning records that the index is in use and reports whether the
// previous run stopped without closing it. On a filesystem too full for
// the mark, this run counts as unclean (its start sweeps orphaned data
// files, which gives space back) and goes on without it.
func (ix *DB) MarkRunning() (unclean bool, err error) {
	err = ix.update(func(txn *badger.Txn) error {
		_, gerr := txn.Get(runningKey)
		switch {
		case gerr == nil:
			unclean = true
		case !errors.Is(gerr, badger.ErrKeyNotFound):
			return gerr
		}
		return txn.Set(runningKey, nil)
	})
	if errors.Is(err, ErrFull) {
		return true, nil
	}
	if err == nil {
		err = ix.db.Sync()
	}
	return unclean, err
}

// MarkStopped records a clean stop. Without room for it, the next start
// takes the stop for an unclean one, which costs it an orphan sweep.
func (ix *DB) MarkStopped() error {
	err := ix.update(func(txn *badger.Txn) error { return txn.Delete(runningKey) })
	if errors.Is(err, ErrFull) {
		return nil
	}
	return err
}

// ForPending calls fn for every path with an owed upload or delete.
func (ix *DB) ForPending(fn func(p string)) error {
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

// OpenReadOnly opens the index in dir/index for reading while no daemon
// holds it.
func OpenReadOnly(dir string, log *slog.Logger) (*DB, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts := badger.DefaultOptions(filepath.Join(dir, "index")).WithLogger(badgerLogger{log}).WithReadOnly(true)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open the index in %s read-only: %w (mount it once, or run this while it is mounted)", dir, err)
	}
	return &DB{db: db}, nil
}

// Sync makes every committed change durable (fsync).
func (ix *DB) Sync() error { return ix.db.Sync() }

// Badger is the database itself, for tests and tools that write keys of
// their own.
func (ix *DB) Badger() *badger.DB { return ix.db }
