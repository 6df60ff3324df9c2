package objstore

import (
	"bytes"
	"context"
	"crypto/md5"
	"fmt"
	"io"
	"maps"
	"sort"
	"strings"
	"sync"
	"time"
)

// Mem is an in-memory Store for tests. It counts requests by operation so
// tests can assert exactly what went over the "wire".
type Mem struct {
	mu      sync.Mutex // guards objects and counts
	objects map[string]memObject
	counts  map[string]int
}

type memObject struct {
	data  []byte
	mtime time.Time
	meta  map[string]string
}

// NewMem returns an empty in-memory store.
func NewMem() *Mem {
	return &Mem{objects: map[string]memObject{}, counts: map[string]int{}}
}

var _ Store = (*Mem)(nil)

func (m *Mem) count(op string) {
	m.mu.Lock()
	m.counts[op]++
	m.mu.Unlock()
}

// Count returns how many requests of op ("put", "get", …) were made.
func (m *Mem) Count(op string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.counts[op]
}

// DeleteRequests counts the requests that could have deleted an object:
// DELETEs and DeleteObjects batches.
func (m *Mem) DeleteRequests() int { return m.Count("delete") + m.Count("delete_objects") }

// Object returns a copy of the object at key and whether it exists.
func (m *Mem) Object(key string) ([]byte, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objects[key]
	return bytes.Clone(o.data), ok
}

// Meta returns a copy of the user metadata of the object at key.
func (m *Mem) Meta(key string) map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.objects[key].meta)
}

// SetObjectMeta stores data at key with user metadata, as another tool
// writing the bucket (s3fs, rclone) would.
func (m *Mem) SetObjectMeta(key string, data []byte, meta map[string]string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.objects[key] = memObject{data: bytes.Clone(data), mtime: time.Now(), meta: maps.Clone(meta)}
}

// Keys returns all keys, sorted.
func (m *Mem) Keys() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	keys := make([]string, 0, len(m.objects))
	for k := range m.objects {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// SetObject stores data at key directly, as another writer of the bucket would.
func (m *Mem) SetObject(key string, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.objects[key] = memObject{data: bytes.Clone(data), mtime: time.Now()}
}

// Put implements Store. It reads the whole body before storing, so a
// cancelled or failed read leaves the previous object untouched, as S3 does.
func (m *Mem) Put(ctx context.Context, key string, body io.ReaderAt, size int64, meta map[string]string) error {
	m.count("put")
	data, err := io.ReadAll(io.NewSectionReader(body, 0, size))
	if err != nil {
		return &Error{Op: "put", Key: key, Err: err}
	}
	if int64(len(data)) != size {
		return &Error{Op: "put", Key: key, Status: 400, Code: "IncompleteBody",
			Err: fmt.Errorf("body has %d bytes, Content-Length says %d", len(data), size)}
	}
	if err := ctx.Err(); err != nil {
		return &Error{Op: "put", Key: key, Err: err}
	}
	m.SetObjectMeta(key, data, meta)
	return nil
}

// Copy implements Store; it counts as a "copy" request.
func (m *Mem) Copy(ctx context.Context, from, to string, meta map[string]string) error {
	m.count("copy")
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objects[from]
	if !ok {
		return NotFound("copy", from)
	}
	o.meta, o.mtime = maps.Clone(meta), time.Now()
	m.objects[to] = o
	return nil
}

// Get implements Store. Like most stores, it vouches for the object with
// its MD5 (a single-part upload's ETag).
func (m *Mem) Get(ctx context.Context, key string, off, n int64) (Body, error) {
	m.count("get")
	m.mu.Lock()
	o, ok := m.objects[key]
	m.mu.Unlock()
	if !ok {
		return Body{}, NotFound("get", key)
	}
	data := o.data
	off = min(off, int64(len(data)))
	end := int64(len(data))
	if n >= 0 {
		end = min(off+n, end)
	}
	return Body{ReadCloser: io.NopCloser(bytes.NewReader(data[off:end])), Len: end - off, Object: o.describe()}, nil
}

// Head implements Store.
func (m *Mem) Head(ctx context.Context, key string) (Object, error) {
	m.count("head")
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objects[key]
	if !ok {
		return Object{}, NotFound("head", key)
	}
	return o.describe(), nil
}

// describe is what a HEAD says of o.
func (o memObject) describe() Object {
	sum := md5.Sum(o.data)
	return Object{Size: int64(len(o.data)), MTime: o.mtime, Meta: maps.Clone(o.meta), Sum: Sum{Algo: MD5, Value: sum[:]}}
}

// Lookup implements Store: one LIST request, which sees everything.
func (m *Mem) Lookup(ctx context.Context, key string, below func(Entry)) (Found, error) {
	m.count("list")
	var f Found
	m.mu.Lock()
	if o, ok := m.objects[key]; ok {
		f.File, f.Size, f.MTime = true, int64(len(o.data)), o.mtime
	}
	m.mu.Unlock()
	under := m.entries(key+"/", true)
	for _, e := range under {
		if below != nil {
			below(e)
		}
	}
	f.Dir, f.Complete = len(under) > 0, true
	return f, nil
}

// Delete implements Store.
func (m *Mem) Delete(ctx context.Context, key string) error {
	m.count("delete")
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.objects, key)
	return nil
}

// List implements Store.
func (m *Mem) List(ctx context.Context, prefix string, recursive bool, fn func(Entry) bool) error {
	m.count("list")
	for _, e := range m.entries(prefix, recursive) {
		if !fn(e) {
			break
		}
	}
	return nil
}

// entries is what a LIST of prefix returns, in key order.
func (m *Mem) entries(prefix string, recursive bool) []Entry {
	m.mu.Lock()
	var out []Entry
	dirs := map[string]bool{}
	for k, o := range m.objects {
		rest, ok := strings.CutPrefix(k, prefix)
		if !ok || rest == "" {
			continue
		}
		if i := strings.IndexByte(rest, '/'); i >= 0 && !recursive {
			if !dirs[rest[:i]] {
				dirs[rest[:i]] = true
				out = append(out, Entry{Name: rest[:i], Dir: true})
			}
			continue
		}
		out = append(out, Entry{Name: rest, Size: int64(len(o.data)), MTime: o.mtime})
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return sortKey(out[i]) < sortKey(out[j]) })
	return out
}

// sortKey is where a store sorts the entry: a directory at its prefix.
func sortKey(e Entry) string {
	if e.Dir {
		return e.Name + "/"
	}
	return e.Name
}

// DeleteMany implements BatchDeleter.
func (m *Mem) DeleteMany(ctx context.Context, keys []string) (map[string]error, error) {
	m.count("delete_objects")
	if len(keys) > MaxDeleteBatch {
		return nil, fmt.Errorf("delete %d keys: at most %d a request", len(keys), MaxDeleteBatch)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range keys {
		delete(m.objects, k)
	}
	return nil, nil
}

// SetObjectTime stores data at key with the given modification time, as
// an object written at that time would be.
func (m *Mem) SetObjectTime(key string, data []byte, mtime time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.objects[key] = memObject{data: bytes.Clone(data), mtime: mtime}
}
