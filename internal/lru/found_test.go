package lru

import (
	"slices"
	"testing"
	"time"
)

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
