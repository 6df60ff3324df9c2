package reconcile

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"sync"
	"time"
)

// orphan is a key to delete, with what the listing said of it.
type orphan struct {
	key string
	meta
}

// logged is one line of the deleted-keys log.
type logged struct {
	key  string
	size int64
	note string
}

func doomed2log(os []orphan) []logged {
	l := make([]logged, len(os))
	for i, o := range os {
		l[i] = logged{o.key, o.size, ""}
	}
	return l
}

// logDeleted appends lines to the deleted-keys log and syncs it: time,
// key, size, and a note for a key that turned out not deleted.
func (o *Options) logDeleted(lines []logged) error {
	if o.DeletedLog == nil || len(lines) == 0 {
		return nil
	}
	w := bufio.NewWriter(o.DeletedLog)
	now := o.Now().UTC().Format(time.RFC3339)
	for _, l := range lines {
		if l.note != "" {
			fmt.Fprintf(w, "%s\t%s%s\t%d\t%s\n", now, o.KeyPrefix, l.key, l.size, l.note)
		} else {
			fmt.Fprintf(w, "%s\t%s%s\t%d\n", now, o.KeyPrefix, l.key, l.size)
		}
	}
	if err := errors.Join(w.Flush(), o.DeletedLog.Sync()); err != nil {
		return fmt.Errorf("deleted-keys log: %w", err)
	}
	return nil
}

// deleteOrphans removes the listed orphans in batches. Before each
// DeleteObjects it asks the database again, in a fresh transaction, and
// keeps any key that gained a row; then it asks the bucket (HEAD) and
// keeps any object rewritten since the listing. A run killed midway
// is resumed by running it again: what was deleted is no longer listed.
func (o *Options) deleteOrphans(ctx context.Context, candidates *bufio.Reader, cutoff time.Time, rep *Report) error {
	d := &deleter{o: o, cutoff: cutoff, rep: rep}
	batches := make(chan []orphan)
	var wg sync.WaitGroup
	for range o.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for batch := range batches {
				if err := d.deleteBatch(ctx, batch); err != nil {
					d.fail(err)
				}
			}
		}()
	}
	scanErr := d.feed(ctx, candidates, batches)
	close(batches)
	wg.Wait()
	return errors.Join(d.firstErr, scanErr, ctx.Err())
}

// deleter is one deleteOrphans run, shared by its workers.
type deleter struct {
	o      *Options
	cutoff time.Time

	mu       sync.Mutex // guards rep, firstErr and the deleted-keys log
	rep      *Report
	firstErr error
}

func (d *deleter) fail(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.firstErr == nil {
		d.firstErr = err
	}
}

func (d *deleter) failed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.firstErr != nil
}

// feed reads the candidates into batches until they end, the context
// ends, or a worker has failed.
func (d *deleter) feed(ctx context.Context, candidates *bufio.Reader, batches chan<- []orphan) error {
	var batch []orphan
	for ctx.Err() == nil && !d.failed() {
		e, ok, err := readRecord(candidates)
		if err != nil || !ok {
			if err != nil {
				return err
			}
			break
		}
		key, m, err := splitMeta(e)
		if err != nil {
			return err
		}
		batch = append(batch, orphan{key, m})
		if len(batch) == d.o.BatchSize {
			batches <- batch
			batch = nil
		}
	}
	if len(batch) > 0 && ctx.Err() == nil {
		batches <- batch
	}
	return nil
}

// deleteBatch deletes what of one batch is still an orphan, logging each
// key before its request.
func (d *deleter) deleteBatch(ctx context.Context, batch []orphan) error {
	doomed, owned, changed, err := d.stillOrphans(ctx, batch)
	if err != nil {
		return err
	}
	// The keys go to the log before the request: a run killed between the
	// two has logged a key it may not have deleted (the next run deletes
	// and logs it again), never the other way round.
	d.mu.Lock()
	d.rep.KeptOwned += owned
	d.rep.KeptChanged += changed
	err = d.o.logDeleted(doomed2log(doomed))
	d.mu.Unlock()
	if err != nil || len(doomed) == 0 {
		return err
	}
	keys := make([]string, len(doomed))
	for i, o := range doomed {
		keys[i] = o.key
	}
	failed, err := d.o.Bucket.DeleteMany(ctx, keys)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var notDeleted []logged
	for _, o := range doomed {
		if e := failed[o.key]; e != nil {
			d.rep.DeleteFailed++
			notDeleted = append(notDeleted, logged{o.key, o.size, "not deleted: " + e.Error()})
			continue
		}
		d.rep.Deleted.add(o.size)
		d.o.progress(func(p *Progress) { p.Deleted.Add(1) })
	}
	return d.o.logDeleted(notDeleted)
}

// stillOrphans asks the database and then the bucket again about a batch:
// it returns the keys still to delete, how many gained a row, and how
// many were rewritten since the listing. A key gone already is dropped.
func (d *deleter) stillOrphans(ctx context.Context, batch []orphan) (doomed []orphan, owned, changed int64, err error) {
	keys := make([]string, len(batch))
	for i, b := range batch {
		keys[i] = b.key
	}
	rows, err := d.o.DB.Owned(ctx, keys)
	if err != nil {
		return nil, 0, 0, err
	}
	for _, b := range batch {
		if rows[b.key] {
			owned++
			continue
		}
		obj, err := d.o.Bucket.Head(ctx, b.key)
		switch {
		case errors.Is(err, iofs.ErrNotExist):
			continue // gone already
		case err != nil:
			return nil, 0, 0, err
		case obj.MTime.After(d.cutoff): // rewritten since the listing
			changed++
			continue
		}
		doomed = append(doomed, b)
	}
	return doomed, owned, changed, nil
}
