package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// Close ends the fetches in flight and waits for them before it closes
// the index: none outlives it to write to a closed (or closing) index.
func TestCloseEndsFetchesInFlight(t *testing.T) {
	mem := objstore.NewMem()
	mem.SetObject("local_content/ab/cd/media", []byte("12345"))
	inGet := make(chan struct{})
	var getReturned atomic.Bool
	store := &objstore.Faulty{Store: mem, BeforeGet: func(ctx context.Context, _ string) error {
		close(inGet)
		<-ctx.Done() // a store that never answers
		getReturned.Store(true)
		return ctx.Err()
	}}
	c, err := Open(Options{Dir: t.TempDir(), Store: store, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), StoreTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	lookupAll(t, c, "local_content/ab/cd/media")
	read := make(chan error, 1)
	go func() {
		// The reader gives up at once; the fetch it started goes on.
		ctx, cancel := context.WithCancel(context.Background())
		go func() { <-inGet; cancel() }()
		read <- c.fetch(ctx, "local_content/ab/cd/media")
	}()
	<-inGet
	<-read
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if !getReturned.Load() {
		t.Fatal("Close returned with a fetch still waiting for the store")
	}
	// And a fetch asked for after Close starts nothing.
	if err := c.fetch(context.Background(), "local_content/ab/cd/media"); !errors.Is(err, ErrClosed) {
		t.Fatalf("a fetch after Close: %v, want ErrClosed", err)
	}
}

// RENAME_NOREPLACE is decided with the rename, under one lock: of two
// renames racing to one new name, exactly one wins, for files and
// directories alike.
func TestRenameNoReplaceRace(t *testing.T) {
	c := openTest(t, t.TempDir(), objstore.NewMem(), nil)
	ctx := context.Background()
	for i := range 30 {
		a, b, target := fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i), fmt.Sprintf("t%d", i)
		if i%2 == 0 {
			writeFile(t, c, a, []byte("a"))
			writeFile(t, c, b, []byte("b"))
		} else {
			for _, d := range []string{a, b} {
				if _, err := c.Mkdir(ctx, d, NewFile{}); err != nil {
					t.Fatal(err)
				}
			}
		}
		errs := make(chan error, 2)
		for _, from := range []string{a, b} {
			go func() { errs <- c.RenameNoReplace(ctx, from, target) }()
		}
		won, refused := 0, 0
		for range 2 {
			switch err := <-errs; {
			case err == nil:
				won++
			case errors.Is(err, ErrExist):
				refused++
			default:
				t.Fatalf("rename %d: %v", i, err)
			}
		}
		if won != 1 || refused != 1 {
			t.Fatalf("rename %d: %d won and %d refused, want one each", i, won, refused)
		}
	}
}
