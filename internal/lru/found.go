package lru

import (
	"slices"
	"time"
)

// Found is a file a disk store found while rebuilding its Set at start:
// its key, its size and when it was last written (or used).
type Found[K comparable] struct {
	Key     K
	Size    int64
	Written time.Time
}

// OldestFirst sorts found oldest first, in place, for a store that then
// puts each into its Set as the most recently used, so that the newest
// ends in front. A time after now sorts as never used: a file dated in
// the future (by hand, or by a clock that was ahead) would otherwise be
// the most recently used after every restart, and a store that keeps the
// later of two times when it touches a file would never move it.
func OldestFirst[K comparable](found []Found[K], now time.Time) {
	for i := range found {
		if found[i].Written.After(now) {
			found[i].Written = time.Time{}
		}
	}
	slices.SortStableFunc(found, func(a, b Found[K]) int { return a.Written.Compare(b.Written) })
}
