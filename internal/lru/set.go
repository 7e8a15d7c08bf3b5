// Package lru is the one eviction set of Paddock's caches: the disk CAS,
// the disk action cache, the worker's file cache, its input-root directory
// cache and the image cache. Each keeps its own data (files, trees, protos)
// and uses a Set for what they share: which entries exist, their sizes,
// their order of use, and which to evict to get back within a bound. The
// stores that keep their entries as files rebuild their Set at start in
// the order OldestFirst gives.
package lru

import (
	"container/list"
	"slices"
	"sync"
	"time"
)

// Entry is one member of a Set.
type Entry[K comparable, V any] struct {
	Key   K
	Value V
	Size  int64
}

// Set is a set of entries with sizes, ordered from the most to the least
// recently used. It is safe for concurrent use; a cache that must change
// its own state together with the set's holds its own lock around both.
// Eviction returns the entries it removed rather than calling back, so
// that callers delete files after their locks are released.
type Set[K comparable, V any] struct {
	mu    sync.Mutex
	items map[K]*list.Element // of *Entry[K, V]
	order *list.List          // front = most recently used
	size  int64
	peak  int // the most entries items has held since it was made
}

// A Go map never gives back the room it grew to, so a set that once held
// millions of entries (a burst of tiny blobs, a cache emptied by a lower
// bound) kept the map's memory for good. When the entries fall to a
// quarter of the peak (and the peak is past shrinkFrom), the map is made
// again at its present size: O(n) work after at least 3n removals, so
// constant per removal.
const shrinkFrom = 4096

// New returns an empty Set.
func New[K comparable, V any]() *Set[K, V] {
	return &Set[K, V]{items: map[K]*list.Element{}, order: list.New()}
}

// Put adds k, or replaces its value and size, as the most recently used.
func (s *Set[K, V]) Put(k K, v V, size int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.items[k]; ok {
		en := e.Value.(*Entry[K, V])
		s.size += size - en.Size
		en.Value, en.Size = v, size
		s.order.MoveToFront(e)
		return
	}
	s.items[k] = s.order.PushFront(&Entry[K, V]{k, v, size})
	s.size += size
	s.peak = max(s.peak, len(s.items))
}

// PutOldest adds k as the least recently used (rebuilding a set from disk,
// newest last), unless it is present.
func (s *Set[K, V]) PutOldest(k K, v V, size int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.items[k]; ok {
		return
	}
	s.items[k] = s.order.PushBack(&Entry[K, V]{k, v, size})
	s.size += size
	s.peak = max(s.peak, len(s.items))
}

// Get returns k's value and marks it used.
func (s *Set[K, V]) Get(k K) (V, bool) { return s.lookup(k, s.useLocked) }

// Peek returns k's value without marking it used.
func (s *Set[K, V]) Peek(k K) (V, bool) { return s.lookup(k, entryOf[K, V]) }

// Remove removes k and returns its value.
func (s *Set[K, V]) Remove(k K) (V, bool) { return s.lookup(k, s.removeLocked) }

// lookup finds k and, under the same lock, applies do to its element,
// returning the value of the entry do returns; the zero value and false
// if k is absent.
func (s *Set[K, V]) lookup(k K, do func(*list.Element) *Entry[K, V]) (V, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.items[k]
	if !ok {
		var zero V
		return zero, false
	}
	return do(e).Value, true
}

func entryOf[K comparable, V any](e *list.Element) *Entry[K, V] { return e.Value.(*Entry[K, V]) }

// useLocked marks e's entry the most recently used.
func (s *Set[K, V]) useLocked(e *list.Element) *Entry[K, V] {
	s.order.MoveToFront(e)
	return entryOf[K, V](e)
}

func (s *Set[K, V]) removeLocked(e *list.Element) *Entry[K, V] {
	en := e.Value.(*Entry[K, V])
	s.order.Remove(e)
	delete(s.items, en.Key)
	s.size -= en.Size
	if s.peak > shrinkFrom && len(s.items) < s.peak/4 {
		// Not maps.Clone, which may keep the old map's size.
		items := make(map[K]*list.Element, len(s.items))
		for k, e := range s.items {
			items[k] = e
		}
		s.items, s.peak = items, len(items)
	}
	return en
}

// Len is the number of entries.
func (s *Set[K, V]) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.items)
}

// Size is the sum of the entries' sizes.
func (s *Set[K, V]) Size() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size
}

// EvictOver removes least recently used entries until the total size is
// at most max, skipping those keep says to keep (nil keeps none: entries
// in use, say), and returns what it removed, oldest first. With max < 0
// nothing is removed.
func (s *Set[K, V]) EvictOver(max int64, keep func(K, V) bool) []Entry[K, V] {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Entry[K, V]
	for e := s.order.Back(); e != nil && max >= 0 && s.size > max; {
		prev := e.Prev()
		en := e.Value.(*Entry[K, V])
		if keep == nil || !keep(en.Key, en.Value) {
			out = append(out, *s.removeLocked(e))
		}
		e = prev
	}
	return out
}

// PopOldest removes and returns the least recently used entry that keep
// (nil: none) does not keep, if there is one.
func (s *Set[K, V]) PopOldest(keep func(K, V) bool) (Entry[K, V], bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for e := s.order.Back(); e != nil; e = e.Prev() {
		en := e.Value.(*Entry[K, V])
		if keep == nil || !keep(en.Key, en.Value) {
			return *s.removeLocked(e), true
		}
	}
	return Entry[K, V]{}, false
}

// RemoveOldest removes the n least recently used entries (fewer if there
// are fewer) and returns them, oldest first.
func (s *Set[K, V]) RemoveOldest(n int) []Entry[K, V] {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Entry[K, V]
	for len(out) < n && s.order.Len() > 0 {
		out = append(out, *s.removeLocked(s.order.Back()))
	}
	return out
}

// Keys returns the keys, most recently used first.
func (s *Set[K, V]) Keys() []K {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]K, 0, len(s.items))
	for e := s.order.Front(); e != nil; e = e.Next() {
		out = append(out, e.Value.(*Entry[K, V]).Key)
	}
	return out
}

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
