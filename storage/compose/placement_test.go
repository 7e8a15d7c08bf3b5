package compose

import (
	"crypto/sha256"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
)

func TestNewPlacementRefusesBadShards(t *testing.T) {
	for _, tc := range []struct {
		name   string
		shards []ShardWeight
		want   string
	}{
		{"none", nil, "no shards"},
		{"no name", []ShardWeight{{"a", 1}, {"", 1}}, "shards[1].name: must be set"},
		{"zero weight", []ShardWeight{{"a", 0}}, "shards[0].weight: must be a positive number"},
		{"negative weight", []ShardWeight{{"a", 1}, {"b", -2}}, "shards[1].weight"},
		{"NaN weight", []ShardWeight{{"a", math.NaN()}}, "shards[0].weight"},
		{"infinite weight", []ShardWeight{{"a", math.Inf(1)}}, "shards[0].weight"},
		{"duplicate", []ShardWeight{{"a", 1}, {"b", 1}, {"a", 2}}, `shards[2].name: "a" is also the name of shards[0]`},
	} {
		_, err := NewPlacement(tc.shards)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

// keys are digest-like placement keys.
func keys(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("SHA256/%x", sha256.Sum256([]byte(strconv.Itoa(i))))
	}
	return out
}

func mustPlace(t *testing.T, shards ...ShardWeight) *Placement {
	t.Helper()
	p, err := NewPlacement(shards)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// MovedFraction is the share of keys whose shard (by name) differs
// between before and after.
func movedFraction(before, after *Placement, ks []string) float64 {
	moved := 0
	for _, k := range ks {
		if before.shards[before.Pick(k)].Name != after.shards[after.Pick(k)].Name {
			moved++
		}
	}
	return float64(moved) / float64(len(ks))
}

// A fourth shard of equal weight joining three takes about a quarter of
// the keys, and only keys it now owns move.
func TestPlacementFourthShardMovesAQuarter(t *testing.T) {
	three := mustPlace(t, ShardWeight{"s0", 1}, ShardWeight{"s1", 1}, ShardWeight{"s2", 1})
	four := mustPlace(t, ShardWeight{"s0", 1}, ShardWeight{"s1", 1}, ShardWeight{"s2", 1}, ShardWeight{"s3", 1})
	ks := keys(100000)
	for _, k := range ks {
		if b, a := three.shards[three.Pick(k)].Name, four.shards[four.Pick(k)].Name; b != a && a != "s3" {
			t.Fatalf("key %s moved from %s to %s, not to the new shard", k, b, a)
		}
	}
	moved := movedFraction(three, four, ks)
	t.Logf("keys moved when a fourth shard joins three: %.4f (ideal 0.25)", moved)
	if math.Abs(moved-0.25) > 0.025 {
		t.Fatalf("moved %.4f of the keys, want within 10%% of 0.25", moved)
	}
	// Removing it again moves the same keys back.
	if back := movedFraction(four, three, ks); back != moved {
		t.Fatalf("removing the shard moved %.4f, adding it %.4f", back, moved)
	}
}

func TestPlacementRespectsWeights(t *testing.T) {
	for _, weights := range [][]float64{{1, 1}, {1, 2, 3}, {5, 1, 1, 1}, {0.5, 1.5}} {
		var shards []ShardWeight
		total := 0.0
		for i, w := range weights {
			shards = append(shards, ShardWeight{fmt.Sprintf("node-%d", i), w})
			total += w
		}
		p := mustPlace(t, shards...)
		counts := make([]int, len(shards))
		ks := keys(60000)
		for _, k := range ks {
			counts[p.Pick(k)]++
		}
		for i, w := range weights {
			got, want := float64(counts[i])/float64(len(ks)), w/total
			if math.Abs(got-want) > 0.1*want {
				t.Errorf("weights %v: shard %d got %.4f of the keys, want %.4f ±10%%", weights, i, got, want)
			}
		}
	}
}

// Placement is by name: the order of the shards in a config does not
// matter, and the mapping is stable across releases (a change would move
// every key of a running cluster: these expectations must never change).
func TestPlacementIsStable(t *testing.T) {
	abc := mustPlace(t, ShardWeight{"a", 1}, ShardWeight{"b", 1}, ShardWeight{"c", 1})
	cab := mustPlace(t, ShardWeight{"c", 1}, ShardWeight{"a", 1}, ShardWeight{"b", 1})
	for _, k := range keys(1000) {
		if abc.shards[abc.Pick(k)].Name != cab.shards[cab.Pick(k)].Name {
			t.Fatalf("key %s placed by position, not by name", k)
		}
	}
	for key, want := range map[string]string{
		"SHA256/" + strings.Repeat("0", 64): "c",
		"SHA256/" + strings.Repeat("f", 64): "a",
		"SHA1/" + strings.Repeat("a", 40):   "b",
		"":                                  "c",
	} {
		if got := abc.shards[abc.Pick(key)].Name; got != want {
			t.Errorf("Pick(%q) = %s, want %s", key, got, want)
		}
	}
}

func BenchmarkPlacementPick(b *testing.B) {
	p, _ := NewPlacement([]ShardWeight{{"s0", 1}, {"s1", 1}, {"s2", 1}, {"s3", 1}, {"s4", 2}, {"s5", 2}, {"s6", 1}, {"s7", 1}})
	k := keys(1)[0]
	for b.Loop() {
		p.Pick(k)
	}
}
