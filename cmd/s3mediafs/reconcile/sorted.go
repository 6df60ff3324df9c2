package reconcile

import (
	"bufio"
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
)

// sortedKeys sorts more keys than memory should hold: keys are gathered in
// runs of at most runKeys, each run is sorted and spilled to a file in dir,
// and Sorted merges the runs. The order is Go's string order, bytewise,
// which is the order S3 lists keys in.
type sortedKeys struct {
	dir     string
	runKeys int
	buf     []string
	runs    []string
	added   int64
}

// defaultRunKeys bounds one in-memory run: about 30 MiB of Synapse keys.
const defaultRunKeys = 1 << 18

func newSortedKeys(dir string, runKeys int) *sortedKeys {
	if runKeys <= 0 {
		runKeys = defaultRunKeys
	}
	return &sortedKeys{dir: dir, runKeys: runKeys}
}

// Add takes one key.
func (s *sortedKeys) Add(key string) error {
	s.buf = append(s.buf, key)
	s.added++
	if len(s.buf) >= s.runKeys {
		return s.spill()
	}
	return nil
}

func (s *sortedKeys) spill() error {
	slices.Sort(s.buf)
	f, err := os.CreateTemp(s.dir, "run-*")
	if err != nil {
		return fmt.Errorf("sort keys: %w", err)
	}
	s.runs = append(s.runs, f.Name())
	w := newRecordWriter(f)
	for _, k := range s.buf {
		w.write(k)
	}
	err = errors.Join(w.flush(), f.Close())
	clear(s.buf)
	s.buf = s.buf[:0]
	if err != nil {
		return fmt.Errorf("sort keys: %w", err)
	}
	return nil
}

// Sorted returns the keys in order, each once. The caller closes it.
func (s *sortedKeys) Sorted() (*keyIter, error) {
	it := &keyIter{}
	if len(s.runs) == 0 {
		// Everything fits in memory: no file at all.
		slices.Sort(s.buf)
		it.mem = slices.Compact(s.buf)
		s.buf = nil
		return it, nil
	}
	if len(s.buf) > 0 {
		if err := s.spill(); err != nil {
			return nil, err
		}
	}
	for _, name := range s.runs {
		f, err := os.Open(name)
		if err != nil {
			it.Close()
			return nil, fmt.Errorf("sort keys: %w", err)
		}
		r := &run{f: f, r: bufio.NewReaderSize(f, 256<<10)}
		it.files = append(it.files, r)
		if r.next() {
			it.h = append(it.h, r)
		} else if r.err != nil {
			it.Close()
			return nil, r.err
		}
	}
	heap.Init(&it.h)
	return it, nil
}

// Remove deletes the run files.
func (s *sortedKeys) Remove() {
	for _, name := range s.runs {
		os.Remove(name)
	}
	s.runs = nil
}

// run is one spilled, sorted file being read back.
type run struct {
	f   *os.File
	r   *bufio.Reader
	key string
	err error
}

func (r *run) next() bool {
	var ok bool
	r.key, ok, r.err = readRecord(r.r)
	return ok
}

// recordWriter writes length-prefixed records: keys from the bucket may
// hold any byte, a newline included, so no byte can end a record.
type recordWriter struct {
	w   *bufio.Writer
	n   [binary.MaxVarintLen64]byte
	err error
}

func newRecordWriter(w io.Writer) *recordWriter {
	return &recordWriter{w: bufio.NewWriterSize(w, 1<<20)}
}

func (rw *recordWriter) write(rec string) error {
	if rw.err == nil {
		_, rw.err = rw.w.Write(rw.n[:binary.PutUvarint(rw.n[:], uint64(len(rec)))])
	}
	if rw.err == nil {
		_, rw.err = rw.w.WriteString(rec)
	}
	return rw.err
}

func (rw *recordWriter) flush() error {
	if rw.err != nil {
		return rw.err
	}
	return rw.w.Flush()
}

// readRecord reads one record written by recordWriter; ok is false at
// the end.
func readRecord(r *bufio.Reader) (rec string, ok bool, err error) {
	n, err := binary.ReadUvarint(r)
	if errors.Is(err, io.EOF) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("reconcile: read a sorted run: %w", err)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", false, fmt.Errorf("reconcile: read a sorted run: %w", err)
	}
	return string(b), true, nil
}

type runHeap []*run

func (h runHeap) Len() int           { return len(h) }
func (h runHeap) Less(i, j int) bool { return h[i].key < h[j].key }
func (h runHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *runHeap) Push(x any)        { *h = append(*h, x.(*run)) }
func (h *runHeap) Pop() any {
	old := *h
	r := old[len(old)-1]
	*h = old[:len(old)-1]
	return r
}

// keyIter yields sorted keys, each once.
type keyIter struct {
	mem   []string
	h     runHeap
	files []*run
	last  string
	begun bool
	err   error
}

// Next returns the next key; ok is false at the end or on an error (Err).
func (it *keyIter) Next() (string, bool) {
	for {
		key, ok := it.pop()
		if !ok {
			return "", false
		}
		if it.begun && key == it.last {
			continue
		}
		it.begun, it.last = true, key
		return key, true
	}
}

func (it *keyIter) pop() (string, bool) {
	if it.files == nil {
		if len(it.mem) == 0 {
			return "", false
		}
		k := it.mem[0]
		it.mem = it.mem[1:]
		return k, true
	}
	if it.err != nil || len(it.h) == 0 {
		return "", false
	}
	top := it.h[0]
	key := top.key
	if top.next() {
		heap.Fix(&it.h, 0)
	} else {
		if top.err != nil {
			it.err = top.err
		}
		heap.Pop(&it.h)
	}
	return key, true
}

// Err is the error that ended the iteration early, if any.
func (it *keyIter) Err() error { return it.err }

// Close releases the run files' handles.
func (it *keyIter) Close() {
	for _, r := range it.files {
		r.f.Close()
	}
	it.files, it.h, it.mem = nil, nil, nil
}
