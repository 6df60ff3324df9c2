package cache

import (
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// maxRecentNames bounds each set of recently settled names (absent from
// the store, or directories fully known): a local user who looks up a
// million invented names costs memory for this many, and the least
// recently used go first.
const maxRecentNames = 65536

// recentNames maps paths to a time, bounded to maxRecentNames entries,
// least recently used first out. It is not safe for concurrent use: the
// Cache keeps its two under c.mu.
type recentNames struct {
	lru *simplelru.LRU[string, time.Time]
}

func newRecentNames() recentNames {
	l, err := simplelru.NewLRU[string, time.Time](maxRecentNames, nil)
	if err != nil {
		panic(err) // only for a size below 1
	}
	return recentNames{l}
}

func (r recentNames) get(p string) (time.Time, bool) { return r.lru.Get(p) }
func (r recentNames) set(p string, at time.Time)     { r.lru.Add(p, at) }
func (r recentNames) remove(p string)                { r.lru.Remove(p) }

// Len is the number of entries.
func (r recentNames) Len() int { return r.lru.Len() }

// dropIf removes the entries for which expired reports true.
func (r recentNames) dropIf(expired func(at time.Time) bool) {
	for _, p := range r.lru.Keys() {
		if at, ok := r.lru.Peek(p); ok && expired(at) {
			r.lru.Remove(p)
		}
	}
}
