package index

// The multipart journal: DB keeps the S3 client's record of open multipart
// uploads (s3.MultipartJournal), so that ones a crash cut off are aborted
// at the next start.

import (
	"bytes"

	"github.com/dgraph-io/badger/v4"
)

// BeginMultipart records an open multipart upload. The write is synced:
// the upload exists in the bucket from now on, whatever happens to us.
func (ix *DB) BeginMultipart(key, uploadID string) error {
	if err := ix.update(func(txn *badger.Txn) error {
		return txn.Set(multipartKey(key, uploadID), nil)
	}); err != nil {
		return err
	}
	return ix.db.Sync()
}

// EndMultipart forgets a completed or aborted multipart upload.
func (ix *DB) EndMultipart(key, uploadID string) error {
	return ix.update(func(txn *badger.Txn) error {
		return txn.Delete(multipartKey(key, uploadID))
	})
}

// OpenMultiparts calls fn for every multipart upload journaled and not
// ended: at start, the ones a previous run left open.
func (ix *DB) OpenMultiparts(fn func(key, uploadID string)) error {
	return ix.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{multipartPrefix}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()[1:]
			if i := bytes.IndexByte(k, 0); i >= 0 {
				fn(string(k[:i]), string(k[i+1:]))
			}
		}
		return nil
	})
}
