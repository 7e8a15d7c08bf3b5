package lru

import (
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestEvictsLeastRecentlyUsed(t *testing.T) {
	s := New[string, int]()
	s.Put("a", 1, 10)
	s.Put("b", 2, 10)
	s.Put("c", 3, 10)
	if _, ok := s.Get("a"); !ok { // a is now the most recent
		t.Fatal("a missing")
	}
	got := s.EvictOver(20, nil)
	if len(got) != 1 || got[0].Key != "b" || got[0].Value != 2 || got[0].Size != 10 {
		t.Fatalf("evicted %v, want b", got)
	}
	if s.Size() != 20 || s.Len() != 2 {
		t.Fatalf("size %d len %d, want 20 and 2", s.Size(), s.Len())
	}
	if keys := s.Keys(); !slices.Equal(keys, []string{"a", "c"}) {
		t.Fatalf("keys %v, want [a c]", keys)
	}
}

func TestEvictOverSkipsKept(t *testing.T) {
	s := New[string, bool]()
	s.Put("held", true, 10)
	s.Put("free", false, 10)
	s.Put("new", false, 10)
	got := s.EvictOver(10, func(_ string, held bool) bool { return held })
	if len(got) != 2 || got[0].Key != "free" || got[1].Key != "new" {
		t.Fatalf("evicted %v, want free then new (held kept)", got)
	}
	if s.Size() != 10 {
		t.Fatalf("size %d: only what is held may stay over the bound", s.Size())
	}
	if got := s.EvictOver(-1, nil); got != nil {
		t.Fatalf("a negative bound evicted %v", got)
	}
}

func TestPopOldestSkipsKept(t *testing.T) {
	s := New[string, bool]()
	s.Put("held", true, 0)
	s.Put("a", false, 0)
	s.Put("b", false, 0)
	held := func(_ string, h bool) bool { return h }
	for _, want := range []string{"a", "b"} {
		if e, ok := s.PopOldest(held); !ok || e.Key != want {
			t.Fatalf("PopOldest = %v %v, want %s", e, ok, want)
		}
	}
	if e, ok := s.PopOldest(held); ok {
		t.Fatalf("PopOldest = %v with only a held entry left", e)
	}
}

func TestPutReplacesAndPeekDoesNotReorder(t *testing.T) {
	s := New[int, string]()
	s.Put(1, "x", 5)
	s.Put(2, "y", 5)
	s.Put(1, "z", 7) // replaced, and now the newest
	if v, _ := s.Peek(1); v != "z" || s.Size() != 12 {
		t.Fatalf("after replace: %q, size %d", v, s.Size())
	}
	s.Peek(2) // does not make 2 the newest
	if got := s.RemoveOldest(1); got[0].Key != 2 {
		t.Fatalf("RemoveOldest = %v, want 2", got)
	}
	s.PutOldest(3, "old", 1)
	s.PutOldest(1, "ignored", 100) // present: unchanged
	if keys := s.Keys(); !slices.Equal(keys, []int{1, 3}) || s.Size() != 8 {
		t.Fatalf("keys %v size %d", keys, s.Size())
	}
	if v, ok := s.Remove(3); !ok || v != "old" {
		t.Fatalf("Remove(3) = %q %v", v, ok)
	}
	if _, ok := s.Remove(3); ok {
		t.Fatal("removed twice")
	}
}

// TestConcurrentUse: many goroutines putting, getting and evicting keep
// the set consistent (run with -race in CI's vet of races).
func TestConcurrentUse(t *testing.T) {
	s := New[string, int]()
	var wg sync.WaitGroup
	var evicted sync.Map
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				k := fmt.Sprintf("%d-%d", g, i%50)
				s.Put(k, i, 1)
				s.Get(fmt.Sprintf("%d-%d", (g+1)%8, i%50))
				for _, e := range s.EvictOver(100, nil) {
					evicted.Store(e.Key, true)
				}
			}
		}()
	}
	wg.Wait()
	if s.Size() > 100 || int64(s.Len()) != s.Size() {
		t.Fatalf("size %d len %d: want at most 100, one per entry", s.Size(), s.Len())
	}
	if len(s.Keys()) != s.Len() {
		t.Fatal("keys and length disagree")
	}
}

// TestSetGivesBackRoomAfterABurst: a set that held a million entries and
// then lost all but a few holds little memory: a Go map keeps the room
// it grew to, so the set makes its map again when it shrinks.
func TestSetGivesBackRoomAfterABurst(t *testing.T) {
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	s := New[int, struct{}]()
	const n = 1_000_000
	for i := range n {
		s.Put(i, struct{}{}, 1)
	}
	full := heap()
	for i := range n - 10 {
		s.Remove(i)
	}
	if got := s.EvictOver(5, nil); len(got) != 5 || s.Len() != 5 {
		t.Fatalf("evicted %d, %d left; want 5 and 5", len(got), s.Len())
	}
	after := heap()
	t.Logf("heap: %d MB before, %d MB full, %d MB after", before>>20, full>>20, after>>20)
	if grew := int64(after) - int64(before); grew > int64(full-before)/10 {
		t.Errorf("after removing all but 5 of %d entries the heap is %d bytes above its start, of %d when full", n, grew, full-before)
	}
	for i := n - 5; i < n; i++ {
		if _, ok := s.Peek(i); !ok {
			t.Errorf("entry %d lost when the map was made again", i)
		}
	}
}

// TestOldestFirst: found files sort oldest first, ties in the order found,
// and one dated after now sorts first, as never used, with its time
// cleared (a store takes it as the file's last use).
func TestOldestFirst(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	found := []Found[string]{
		{Key: "newest", Written: now},
		{Key: "ahead", Written: now.Add(time.Hour)},
		{Key: "old", Written: now.Add(-time.Hour)},
		{Key: "tie-first", Written: now.Add(-time.Minute)},
		{Key: "tie-second", Written: now.Add(-time.Minute)},
	}
	OldestFirst(found, now)
	var keys []string
	for _, f := range found {
		keys = append(keys, f.Key)
	}
	if want := []string{"ahead", "old", "tie-first", "tie-second", "newest"}; !slices.Equal(keys, want) {
		t.Errorf("order %q, want %q", keys, want)
	}
	if !found[0].Written.IsZero() {
		t.Errorf("the file dated ahead keeps its time %v; want it cleared", found[0].Written)
	}
}
