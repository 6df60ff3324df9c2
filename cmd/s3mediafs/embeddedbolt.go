package main

import (
	"bytes"
	"io"
	"maps"
	"sync"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3bolt"
)

// boltBackend makes gofakes3's bolt backend safe to use from many
// requests at once. s3bolt hands out objects whose bytes and hash are
// slices of bolt's memory map after its read transaction has ended, and a
// write that grows the file remaps it: reading them then faults the whole
// daemon (a CopyObject, which reads, writes, then formats the hash, did so
// every time the file grew). Here every write waits for the reads in
// flight, and a read copies what it returns before letting writes in.
type boltBackend struct {
	*s3bolt.Backend
	mu sync.RWMutex
}

// detach copies obj's bytes, hash and metadata out of bolt's memory.
func detach(obj *gofakes3.Object) (*gofakes3.Object, error) {
	if obj == nil {
		return nil, nil
	}
	if obj.Contents != nil {
		data, err := io.ReadAll(obj.Contents)
		obj.Contents.Close()
		if err != nil {
			return nil, err
		}
		obj.Contents = io.NopCloser(bytes.NewReader(data))
	}
	obj.Hash = bytes.Clone(obj.Hash)
	obj.Metadata = maps.Clone(obj.Metadata)
	return obj, nil
}

func (b *boltBackend) GetObject(bucket, key string, rng *gofakes3.ObjectRangeRequest) (*gofakes3.Object, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	obj, err := b.Backend.GetObject(bucket, key, rng)
	if err != nil {
		return nil, err
	}
	return detach(obj)
}

func (b *boltBackend) HeadObject(bucket, key string) (*gofakes3.Object, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	obj, err := b.Backend.HeadObject(bucket, key)
	if err != nil {
		return nil, err
	}
	return detach(obj)
}

func (b *boltBackend) ListBucket(name string, prefix *gofakes3.Prefix, page gofakes3.ListBucketPage) (*gofakes3.ObjectList, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.Backend.ListBucket(name, prefix, page)
}

func (b *boltBackend) PutObject(bucket, key string, meta map[string]string, input io.Reader, size int64, cond *gofakes3.PutConditions) (gofakes3.PutObjectResult, error) {
	// The body comes off the network before the lock is taken.
	data, err := gofakes3.ReadAll(input, size)
	if err != nil {
		return gofakes3.PutObjectResult{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	// s3bolt merges the metadata of the object it replaces into the new
	// one's, where S3 replaces it whole: a removed key would linger. The
	// old object goes first; the body is already read, so what can still
	// fail is the bolt file itself (and the mount keeps a failed upload's
	// bytes and sends them again).
	if cond == nil { // (a conditional put must see the old object)
		if _, err := b.Backend.DeleteObject(bucket, key); err != nil {
			return gofakes3.PutObjectResult{}, err
		}
	}
	return b.Backend.PutObject(bucket, key, meta, bytes.NewReader(data), size, cond)
}

// CopyObject reads and writes through the methods above.
func (b *boltBackend) CopyObject(srcBucket, srcKey, dstBucket, dstKey string, meta map[string]string) (gofakes3.CopyObjectResult, error) {
	return gofakes3.CopyObject(b, srcBucket, srcKey, dstBucket, dstKey, meta)
}

func (b *boltBackend) DeleteObject(bucket, key string) (gofakes3.ObjectDeleteResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Backend.DeleteObject(bucket, key)
}

func (b *boltBackend) DeleteMulti(bucket string, keys ...string) (gofakes3.MultiDeleteResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Backend.DeleteMulti(bucket, keys...)
}

func (b *boltBackend) CreateBucket(name string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Backend.CreateBucket(name)
}

func (b *boltBackend) DeleteBucket(name string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Backend.DeleteBucket(name)
}

func (b *boltBackend) ForceDeleteBucket(name string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Backend.ForceDeleteBucket(name)
}
