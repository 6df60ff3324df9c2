package cache

import "time"

// subtree is what one store lookup learned about the tree below a
// directory it met: every object there, and the directories they imply.
// The kernel resolves a path one name at a time, so the names below are
// looked up next; for NegativeTTL they are answered from here, without
// asking the store again. A cold read of local_content/ab/cd/<id> then
// costs one LIST for the first unknown level and the GET.
type subtree struct {
	at    time.Time
	files map[string]remoteFile // by path relative to the directory
	dirs  map[string]bool
}

type remoteFile struct {
	size  int64
	mtime time.Time
}

// maxSubtrees bounds the subtrees kept; each holds at most one LIST page.
const maxSubtrees = 64

func newSubtree(at time.Time) *subtree {
	return &subtree{at: at, files: map[string]remoteFile{}, dirs: map[string]bool{}}
}

// add records an object at name (relative to the subtree's directory).
func (s *subtree) add(name string, size int64, mtime time.Time) {
	s.files[name] = remoteFile{size, mtime}
	for i := range len(name) {
		if name[i] == '/' {
			s.dirs[name[:i]] = true
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
	for d := parentOf(p); ; d = parentOf(d) {
		if s := c.subtrees[d]; s != nil && time.Since(s.at) < c.opts.NegativeTTL {
			rel := p
			if d != "" {
				rel = p[len(d)+1:]
			}
			if rf, ok := s.files[rel]; ok {
				return &rf, false, true, s.at
			}
			return nil, s.dirs[rel], true, s.at
		}
		if d == "" {
			return nil, false, false, time.Time{}
		}
	}
}

// forgetSubtreesLocked drops every subtree: a local unlink, rmdir or
// rename may have removed what one of them still shows. Called with c.mu
// held.
func (c *Cache) forgetSubtreesLocked() { clear(c.subtrees) }
