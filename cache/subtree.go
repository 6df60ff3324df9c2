package cache

import (
	"strings"
	"time"

	"github.com/s3mediafs/s3mediafs/cache/index"
	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// subtree is what one store lookup learned about the tree below a
// directory it met: every object there, and the directories they imply.
// The kernel resolves a path one name at a time, so the names below are
// looked up next; for NegativeTTL they are answered from here, without
// asking the store again. A cold read of local_content/ab/cd/<id> then
// costs one LIST for the first unknown level and the GET.
type subtree struct {
	at    time.Time
	files map[string]remoteFile // by path relative to the directory
	dirs  map[string]int        // directories, with how many files lie below each
}

type remoteFile struct {
	size  int64
	mtime time.Time
}

// maxSubtrees bounds the subtrees kept; each holds at most one LIST page.
const maxSubtrees = 64

func newSubtree(at time.Time) *subtree {
	return &subtree{at: at, files: map[string]remoteFile{}, dirs: map[string]int{}}
}

// add records an object at name (relative to the subtree's directory).
func (s *subtree) add(e objstore.Entry) {
	if _, ok := s.files[e.Name]; !ok {
		s.count(e.Name, 1)
	}
	s.files[e.Name] = remoteFile{e.Size, e.MTime}
}

// remove forgets the object at name, and the directories only it implied.
func (s *subtree) remove(name string) {
	if _, ok := s.files[name]; ok {
		delete(s.files, name)
		s.count(name, -1)
	}
}

// count adds n to the file count of every directory above name.
func (s *subtree) count(name string, n int) {
	for i := range len(name) {
		if name[i] == '/' {
			if s.dirs[name[:i]] += n; s.dirs[name[:i]] <= 0 {
				delete(s.dirs, name[:i])
			}
		}
	}
}

// keepSubtreeLocked keeps st as the tree below dir, in place of the
// oldest one when maxSubtrees are kept; the janitor drops expired ones.
// Called with c.mu held.
func (c *Cache) keepSubtreeLocked(dir string, st *subtree) {
	if len(c.subtrees) >= maxSubtrees {
		oldest := ""
		for d, s := range c.subtrees {
			if oldest == "" || s.at.Before(c.subtrees[oldest].at) {
				oldest = d
			}
		}
		delete(c.subtrees, oldest)
	}
	c.subtrees[dir] = st
}

// fromSubtreeLocked answers a lookup of p from a fresh subtree of one of
// its ancestors, learned at the time given: a file (f not nil), a
// directory, or absent. covered is false when no fresh subtree holds p.
// Called with c.mu held.
func (c *Cache) fromSubtreeLocked(p string) (f *remoteFile, dir, covered bool, at time.Time) {
	for d := index.ParentOf(p); ; d = index.ParentOf(d) {
		if s := c.subtrees[d]; s != nil && time.Since(s.at) < c.opts.NegativeTTL {
			rel := p
			if d != "" {
				rel = p[len(d)+1:]
			}
			if rf, ok := s.files[rel]; ok {
				return &rf, false, true, s.at
			}
			return nil, s.dirs[rel] > 0, true, s.at
		}
		if d == "" {
			return nil, false, false, time.Time{}
		}
	}
}

// removeFromSubtreesLocked makes every subtree forget what was removed
// here: the file p, or the directory p and all below it. What a subtree
// still holds is then what the store holds that this mount has not
// removed. Called with c.mu held.
func (c *Cache) removeFromSubtreesLocked(p string) {
	// Only p's ancestors can hold it: a purge after many lookups keeps
	// many subtrees, and visiting each per removal would be quadratic.
	for d := p; d != ""; {
		d = index.ParentOf(d)
		s := c.subtrees[d]
		if s == nil {
			continue
		}
		rel, _ := relativeTo(d, p)
		s.remove(rel)
		if s.dirs[rel] > 0 {
			for name := range s.files {
				if strings.HasPrefix(name, rel+"/") {
					s.remove(name)
				}
			}
		}
	}
}

// subtreeEmptyBelowLocked answers, from a subtree of p or of one of its
// ancestors learned within maxAge, whether the store holds anything this
// mount has not removed below the directory p; known is false when no
// such subtree covers p. Called with c.mu held.
func (c *Cache) subtreeEmptyBelowLocked(p string, maxAge time.Duration) (empty, known bool) {
	for d := p; ; d = index.ParentOf(d) {
		if s := c.subtrees[d]; s != nil && time.Since(s.at) < maxAge {
			if d == p {
				return len(s.files) == 0, true
			}
			rel, _ := relativeTo(d, p)
			for name := range s.files {
				if strings.HasPrefix(name, rel+"/") {
					return false, true
				}
			}
			return true, true
		}
		if d == "" {
			return false, false
		}
	}
}

// subtreeAge is how long a subtree is kept: lookups trust one for
// NegativeTTL, rmdir for RevalidateAfter (see storeBelowKnown).
func (c *Cache) subtreeAge() time.Duration {
	return max(c.opts.NegativeTTL, c.opts.RevalidateAfter)
}

// relativeTo returns p relative to the directory d, if p lies below it.
func relativeTo(d, p string) (string, bool) {
	if d == "" {
		return p, p != ""
	}
	rel, ok := strings.CutPrefix(p, d+"/")
	return rel, ok && rel != ""
}
