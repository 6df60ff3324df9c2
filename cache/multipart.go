package cache

import (
	"bytes"
	"context"

	"github.com/dgraph-io/badger/v4"
)

// The multipart journal: m<key>\x00<upload id> -> "" while a multipart
// upload is open, and m<key>\x00 (no ID) while one is being created. An entry found at start belongs to an upload a crash cut
// off; it is aborted so its parts do not linger (and cost) in the bucket.
const multipartPrefix = 'm'

func multipartKey(key, uploadID string) []byte {
	k := make([]byte, 0, len(key)+len(uploadID)+2)
	k = append(k, multipartPrefix)
	k = append(k, key...)
	k = append(k, 0)
	return append(k, uploadID...)
}

// BeginMultipart records an open multipart upload. The write is synced:
// the upload exists in the bucket from now on, whatever happens to us.
func (c *Cache) BeginMultipart(key, uploadID string) error {
	if err := c.ix.db.Update(func(txn *badger.Txn) error {
		return txn.Set(multipartKey(key, uploadID), nil)
	}); err != nil {
		return err
	}
	return c.ix.db.Sync()
}

// EndMultipart forgets a completed or aborted multipart upload.
func (c *Cache) EndMultipart(key, uploadID string) error {
	return c.ix.db.Update(func(txn *badger.Txn) error {
		return txn.Delete(multipartKey(key, uploadID))
	})
}

// abortJournaledUploads aborts the multipart uploads a previous run left
// open. Failures stay journaled for the next start.
func (c *Cache) abortJournaledUploads(ctx context.Context) {
	type open struct{ key, id string }
	var uploads []open
	err := c.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{multipartPrefix}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()[1:]
			if i := bytes.IndexByte(k, 0); i >= 0 {
				uploads = append(uploads, open{string(k[:i]), string(k[i+1:])})
			}
		}
		return nil
	})
	if err != nil {
		c.log.Error("reading the multipart journal failed", "err", err)
		return
	}
	for _, u := range uploads {
		var err error
		if u.id == "" {
			// An intent: the upload's ID never reached the journal.
			err = c.store.AbortStaleMultipart(ctx, u.key, c.openedAt)
		} else {
			err = c.store.AbortMultipart(ctx, u.key, u.id)
		}
		if err != nil {
			c.log.Warn("could not abort a multipart upload left by a crash; will try at the next start", "key", u.key, "err", err)
			continue
		}
		if err := c.EndMultipart(u.key, u.id); err != nil {
			c.log.Warn("multipart journal update failed", "key", u.key, "err", err)
		}
		c.log.Debug("cleared a multipart upload left by a crash", "key", u.key, "upload_id", u.id)
	}
}
