//go:build race

package cache

// raceEnabled: the race detector slows every test several times over, so
// the largest tests run smaller under it.
const raceEnabled = true
