// A full filesystem under the index: writes are refused with ENOSPC and
// reads go on, never a SIGBUS in Badger's mapped logs; a start on the full
// filesystem gives back the reserve and opens; room again, writes again.

package index

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// smallFS mounts a tmpfs of size bytes for the test (root only).
func smallFS(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounts a tmpfs: needs root")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// fill writes a file in dir until the filesystem is full, as another
// process would, and returns its path.
func fill(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return p
		}
	}
}

func putMany(ix *DB, from, n int) error {
	for i := from; i < from+n; i++ {
		_, err := ix.Update(Acct{}, nil, func(t *Tx) error {
			return t.Put(fmt.Sprintf("local_content/ab/cd/file-%06d-with-a-long-enough-name", i), Record{State: Remote, Ino: uint64(i + 2), Size: int64(i)})
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func TestFullFilesystemRefusesIndexWritesAndNeverCrashes(t *testing.T) {
	dir := smallFS(t, 24<<20)
	ix, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, reserveName)); err != nil {
		t.Fatalf("no reserve kept on a filesystem with room: %v", err)
	}
	if err := putMany(ix, 0, 2000); err != nil {
		t.Fatal(err)
	}
	filler := fill(t, dir)
	// Enough writes to fill memtables many times over: each is refused,
	// none is written through a map into space the index does not own.
	refused := 0
	for i := range 20_000 {
		err := putMany(ix, 2000+i, 1)
		switch {
		case err == nil:
		case errors.Is(err, ErrFull) && errors.Is(err, syscall.ENOSPC):
			refused++
		default:
			t.Fatalf("write %d on a full filesystem: %v", i, err)
		}
	}
	if refused == 0 {
		t.Fatal("no write was refused on a full filesystem")
	}
	if err := ix.Close(); err != nil {
		t.Logf("close on a full filesystem: %v", err)
	}

	// A start on the full filesystem gives the reserve back and opens.
	ix, err = Open(dir, nil)
	if err != nil {
		t.Fatalf("start on a full filesystem: %v", err)
	}
	n := 0
	if err := ix.View(func(v View) error {
		return v.ForChildren("local_content/ab/cd", func(string, Record) error { n++; return nil })
	}); err != nil || n < 2000 {
		t.Fatalf("reads after a start on a full filesystem: %d records, %v", n, err)
	}
	if err := putMany(ix, 50_000, 1); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("a write on the full filesystem after the start: %v, want ENOSPC", err)
	}
	os.Remove(filler)
	time.Sleep(150 * time.Millisecond)
	if err := putMany(ix, 50_000, 100); err != nil {
		t.Fatalf("writes once there is room again: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, reserveName)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the reserve was not made again once there was room")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
}

// Killed on a full filesystem with its reserve spent, the index still
// starts: it takes back its logs' unwritten tails to replay them. Every
// record reads; writes are ENOSPC until there is room, then go on.
func TestStartWithoutReserveOnAFullFilesystem(t *testing.T) {
	if dir := os.Getenv("S3MEDIAFS_INDEX_KILLED"); dir != "" {
		// The child: writes, loses its reserve, meets a full filesystem,
		// and dies without closing anything.
		ix, err := Open(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := putMany(ix, 0, 500); err != nil {
			t.Fatal(err)
		}
		os.Remove(filepath.Join(dir, reserveName))
		fill(t, dir)
		os.Exit(0)
	}
	dir := smallFS(t, 24<<20)
	child := exec.Command(os.Args[0], "-test.run=^TestStartWithoutReserveOnAFullFilesystem$")
	child.Env = append(os.Environ(), "S3MEDIAFS_INDEX_KILLED="+dir)
	if out, err := child.CombinedOutput(); err != nil {
		t.Fatalf("the child: %v\n%s", err, out)
	}
	filler := filepath.Join(dir, "filler")
	if free, _, _ := freeBytes(dir); free > 64<<10 {
		t.Fatalf("the filesystem is not full: %d bytes free", free)
	}
	var ix *DB
	var err error
	ix, err = Open(dir, nil)
	if err != nil {
		t.Fatalf("start on a full filesystem without a reserve: %v", err)
	}
	defer ix.Close()
	n := 0
	if err := ix.View(func(v View) error {
		return v.ForChildren("local_content/ab/cd", func(string, Record) error { n++; return nil })
	}); err != nil || n != 500 {
		t.Fatalf("reads after the start: %d records, %v", n, err)
	}
	if err := putMany(ix, 1000, 1); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("a write on the full filesystem: %v", err)
	}
	os.Remove(filler)
	time.Sleep(150 * time.Millisecond)
	if err := putMany(ix, 1000, 100); err != nil {
		t.Fatalf("writes once there is room: %v", err)
	}
}

// TestWritesThatMakeRoomGoOnNearTheFloor: between the lower floor and the
// floor, the writes that make room (UpdateFreeing) are taken while every
// other is refused; below the lower floor both are.
func TestWritesThatMakeRoomGoOnNearTheFloor(t *testing.T) {
	dir := smallFS(t, 24<<20)
	ix, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	os.Remove(filepath.Join(dir, reserveName)) // only the filler decides what is free
	g := ix.guard
	take := func(keep int64) {
		t.Helper()
		os.Remove(filepath.Join(dir, "filler"))
		free, _, err := freeBytes(dir)
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.Create(filepath.Join(dir, "filler"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := syscall.Fallocate(int(f.Fd()), 0, 0, free-keep); err != nil {
			t.Fatal(err)
		}
	}
	write := func(freeing bool) error {
		update := ix.Update
		if freeing {
			update = ix.UpdateFreeing
		}
		_, err := update(Acct{}, nil, func(t *Tx) error { return t.Put("f", Record{State: Dirty, Ino: 5}) })
		return err
	}
	take((g.need + g.needLow) / 2)
	if err := write(false); !errors.Is(err, ErrFull) {
		t.Errorf("an ordinary write between the floors: %v, want ErrFull", err)
	}
	if err := write(true); err != nil {
		t.Errorf("a write that makes room, between the floors: %v", err)
	}
	take(g.needLow / 2)
	if err := write(true); !errors.Is(err, ErrFull) {
		t.Errorf("a write that makes room, below the lower floor: %v, want ErrFull", err)
	}
}
