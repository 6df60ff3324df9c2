package cache

import (
	"context"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/index"
	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// rmdirChecks are the directories removed on the index's word alone (see
// Options.RmdirWaitsForStore): each is checked against the store in the
// background once the deletes owed below it are done, and one that still
// holds objects this mount did not remove (another host's) is recorded
// again, so the parent's next listing shows it.
//
// The checks are coalesced so that a purge costs a few LISTs, not one per
// media: a round waits until no rmdir came for a period and every queued
// directory's deletes have landed (ten periods at most); a directory
// whose removed ancestor is checked too is covered by the ancestor's
// check; removed siblings are checked with one delimited LIST of their
// parent, and, where the store lists emptied directories, one recursive
// LIST of it.
type rmdirChecks struct {
	mu    sync.Mutex
	dirs  map[string]struct{}
	every time.Duration // how often the due checks run
	first time.Time     // when the oldest waiting directory was removed
	last  time.Time     // when the newest was
	done  atomic.Uint64 // directories checked
	back  atomic.Uint64 // of those, recorded again
}

// maxRmdirChecks bounds the directories waiting for a check. A directory
// dropped past it is not wrong: its name still asks the store at its next
// lookup, once the kernel's negative entry expires.
const maxRmdirChecks = 65536

// maxSiblingsListed bounds the names one LIST of a parent reads per round:
// past it, each removed child is checked with a LIST of its own.
const maxSiblingsListed = 10_000

func newRmdirChecks(every time.Duration) *rmdirChecks {
	return &rmdirChecks{dirs: map[string]struct{}{}, every: every}
}

// add queues the check of the removed directory p.
func (r *rmdirChecks) add(p string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.dirs) >= maxRmdirChecks {
		return
	}
	r.dirs[p] = struct{}{}
	r.last = time.Now()
	if len(r.dirs) == 1 {
		r.first = r.last
	}
}

// take removes and returns the queued directories, if due is true for
// each; otherwise, unless they have waited ten rounds, none, so that a
// purge whose deletes are still landing is checked in one round once they
// have, its removed directories gathered under the fewest roots. Those
// still not due after ten rounds wait a new window.
func (r *rmdirChecks) take(due func(p string) bool) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	waiting := false
	for p := range r.dirs {
		if due(p) {
			out = append(out, p)
		} else {
			waiting = true
		}
	}
	if waiting && time.Since(r.first) < 10*r.every {
		return nil
	}
	for _, p := range out {
		delete(r.dirs, p)
	}
	r.first = time.Now()
	return out
}

// waiting is the number of directories not checked yet.
func (r *rmdirChecks) waiting() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.dirs)
}

// roundDue reports whether a round of checks should run now: something
// waits, and the removals have paused for a round or gone on for ten.
func (r *rmdirChecks) roundDue(now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.dirs) > 0 && (now.Sub(r.last) >= r.every || now.Sub(r.first) >= 10*r.every)
}

// checkRemovedDirsLoop runs the due checks every r.every until ctx ends.
func (c *Cache) checkRemovedDirsLoop(ctx context.Context) {
	tick(ctx, c.rmdirChecks.every, func(now time.Time) {
		if c.rmdirChecks.roundDue(now) && !c.storeIsDown() {
			c.checkRemovedDirs(ctx)
		}
	})
}

// checkRemovedDirs checks the removed directories below which no delete is
// owed any more: until then, a LIST would see this mount's own objects.
func (c *Cache) checkRemovedDirs(ctx context.Context) {
	var due []string
	// The view cannot fail: hasOwedAtOrBelow counts a failed read as
	// owed, which leaves that directory for the next round.
	if err := c.ix.View(func(txn index.View) error {
		due = c.rmdirChecks.take(func(p string) bool {
			return !hasOwedAtOrBelow(txn, p)
		})
		return nil
	}); err != nil {
		c.log.Warn("index read failed; removed directories are checked at the next round", "err", err)
		return
	}
	for parent, dirs := range groupByParent(outermost(due)) {
		if ctx.Err() != nil {
			return // stopping: an unchecked directory still asks the store at its next lookup
		}
		c.checkSiblings(ctx, parent, dirs)
	}
}

// hasOwedAtOrBelow reports an owed upload or delete at p, below p, or of
// p's folder key.
func hasOwedAtOrBelow(txn index.View, p string) bool { return txn.HasOwedAtOrBelow(p) }

// outermost drops each directory that has an ancestor in dirs: the
// ancestor's check covers it.
func outermost(dirs []string) []string {
	sort.Strings(dirs) // an ancestor sorts before its descendants
	in := map[string]bool{}
	var out []string
	for _, d := range dirs {
		covered := false
		for a := index.ParentOf(d); a != ""; a = index.ParentOf(a) {
			if in[a] {
				covered = true
				break
			}
		}
		if !covered {
			in[d] = true
			out = append(out, d)
		}
	}
	return out
}

// groupByParent maps each parent to those of dirs directly in it.
func groupByParent(dirs []string) map[string][]string {
	out := map[string][]string{}
	for _, d := range dirs {
		out[index.ParentOf(d)] = append(out[index.ParentOf(d)], d)
	}
	return out
}

// checkSiblings checks the removed directories dirs, all children of
// parent: one delimited LIST of parent names those that may hold objects
// (or, on stores that keep empty folders, held some), and a LIST of each
// of those settles it. A single directory is asked about directly.
func (c *Cache) checkSiblings(ctx context.Context, parent string, dirs []string) {
	c.rmdirChecks.done.Add(uint64(len(dirs)))
	maybe, settled := dirs, false
	if len(dirs) > 1 {
		if seen, ok := c.listedAmong(ctx, parent, dirs, false); ok {
			maybe = seen
		}
	}
	if len(maybe) > 2 {
		// Stores that keep emptied directories (versitygw's posix
		// backend) list them all: one recursive LIST of the parent
		// tells which hold objects, unless it holds too many. Its
		// answer is final: no delete is owed below a checked directory,
		// so none can land while it is read.
		if seen, ok := c.listedAmong(ctx, parent, maybe, true); ok {
			maybe, settled = seen, true
		}
	}
	for _, d := range maybe {
		if !settled {
			lctx, cancel := context.WithTimeout(ctx, c.opts.StoreTimeout)
			holds, err := c.remoteDirExists(lctx, d)
			cancel()
			if err != nil {
				c.noteStoreError(err)
				c.log.Debug("checking a removed directory in the store failed; its next lookup asks again", "dir", d, "err", err)
				continue
			}
			if !holds {
				continue
			}
		}
		c.reappear(d)
	}
}

// listedAmong returns those of dirs that a LIST of parent shows: as
// prefixes, or, recursive, with an object below them that is not being
// deleted here. ok is false when the LIST failed or the parent holds too
// many names to read them all.
func (c *Cache) listedAmong(ctx context.Context, parent string, dirs []string, recursive bool) (seen []string, ok bool) {
	want := map[string]bool{}
	for _, d := range dirs {
		want[d] = true
	}
	n := 0
	prefix := ""
	if parent != "" {
		prefix = parent + "/"
	}
	lctx, cancel := context.WithTimeout(ctx, c.opts.StoreTimeout)
	defer cancel()
	found := map[string]bool{}
	var viewErr error
	err := c.store.List(lctx, prefix, recursive, func(e objstore.Entry) bool {
		n++
		name := strings.TrimSuffix(e.Name, "/")
		if !recursive {
			if p := index.JoinPath(parent, name); e.Dir && want[p] {
				seen = append(seen, p)
			}
			return n < maxSiblingsListed
		}
		top, _, below := strings.Cut(name, "/")
		d := index.JoinPath(parent, top)
		if !below || !want[d] || found[d] {
			return n < maxSiblingsListed
		}
		key := index.JoinPath(parent, name)
		var gone bool
		viewErr = c.ix.View(func(txn index.View) (err error) {
			gone, err = txn.GoneHere(key)
			return err
		})
		if !gone && viewErr == nil {
			found[d] = true
			seen = append(seen, d)
		}
		return n < maxSiblingsListed && viewErr == nil
	})
	err = errorOr(err, viewErr)
	if err != nil || n >= maxSiblingsListed {
		if err != nil {
			c.noteStoreError(err)
		}
		return nil, false
	}
	return seen, true
}

// reappear records the removed directory d again, and any removed
// directories above it, because the store holds objects below d that
// this mount did not remove.
func (c *Cache) reappear(d string) {
	var chain []string
	for p := d; p != ""; p = index.ParentOf(p) {
		if _, ok, err := c.readRecord(p); err != nil || ok {
			break
		}
		chain = append(chain, p)
	}
	if len(chain) == 0 {
		return // made again here meanwhile: it shows already
	}
	for i := len(chain) - 1; i >= 0; i-- {
		if _, err := c.learn(chain[i], index.Record{Dir: true, MTime: time.Now().UnixNano()}, time.Time{}); err != nil {
			c.log.Warn("recording a removed directory that still holds objects failed; its next lookup finds it", "dir", chain[i], "err", err)
			return
		}
	}
	c.rmdirChecks.back.Add(1)
	c.log.Warn("a removed directory still holds objects in the store that this mount did not write (another host's?); it shows again", "dir", d)
}
