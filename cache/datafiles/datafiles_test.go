// Data files: creation and removal, the pool of spares, the free-space sample.

package datafiles

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Every id is told to born before its file exists; a file is made empty,
// private, at its path, and removed.
func TestCreateAndRemove(t *testing.T) {
	var born []string
	d := New(t.TempDir(), func(id string) {
		born = append(born, id)
	}, nil)
	id, f, err := d.Create()
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	fi, err := os.Stat(d.Path(id))
	if err != nil || fi.Size() != 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("new data file: %v %v", fi, err)
	}
	if len(born) != 1 || born[0] != id {
		t.Errorf("born %v, want [%s]", born, id)
	}
	d.Remove(id)
	d.Remove("") // names none
	if _, err := os.Stat(d.Path(id)); !os.IsNotExist(err) {
		t.Errorf("after Remove: %v", err)
	}
}

// Spares are made ahead, handed out by New with a fresh time, and removed
// when the filler stops.
func TestSpares(t *testing.T) {
	d := New(t.TempDir(), nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.FillSpares(ctx); close(done) }()
	for deadline := time.Now().Add(5 * time.Second); d.Spares() < SpareTarget; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d spares made, want %d", d.Spares(), SpareTarget)
		}
	}
	before := time.Now().Add(-time.Second)
	id, f, err := d.New()
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if fi, err := os.Stat(d.Path(id)); err != nil || fi.ModTime().Before(before) {
		t.Errorf("a spare handed out: %v %v", fi, err)
	}
	cancel()
	<-done
	if d.Spares() != 0 {
		t.Errorf("%d spares left after the filler stopped", d.Spares())
	}
	left, _ := os.ReadDir(d.Root())
	n := 0
	for _, e := range left {
		sub, _ := os.ReadDir(filepath.Join(d.Root(), e.Name()))
		n += len(sub)
	}
	if n != 1 {
		t.Errorf("%d data files left, want the one handed out", n)
	}
}

// Consumed lowers the sampled free space until the next sample.
func TestFreeSpace(t *testing.T) {
	d := New(t.TempDir(), nil, nil)
	free, total := d.Free(true)
	if free <= 0 || total < free {
		t.Fatalf("free %d of %d", free, total)
	}
	d.Consumed(1 << 20)
	if now, _ := d.Free(false); now != free-1<<20 {
		t.Errorf("after consuming 1 MiB: %d, want %d", now, free-1<<20)
	}
}
