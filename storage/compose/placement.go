package compose

import (
	"errors"
	"fmt"
	"math"
)

// ShardWeight names a shard and its share of the keys.
type ShardWeight struct {
	Name   string
	Weight float64
}

// Placement maps keys to shards by weighted rendezvous hashing: every shard
// scores every key, and the key belongs to the highest score. A key's
// score on one shard does not depend on the other shards, so adding a
// shard moves only the keys it now wins (its share, about 1/N for equal
// weights), all of them onto it, and removing one moves only its own keys.
// Scores are -weight/ln(u) with u uniform in (0,1) from a hash of the
// shard's name and the key (Resch's weighted rendezvous), which gives each
// shard a share proportional to its weight. Shards are identified by
// name, not position, so reordering a config moves nothing.
//
// Placement is pure and immutable, safe for concurrent use.
type Placement struct {
	shards []ShardWeight
	seeds  []uint64 // hash of each shard's name
}

// NewPlacement checks shards (at least one; names non-empty and distinct;
// weights positive and finite) and returns their placement.
func NewPlacement(shards []ShardWeight) (*Placement, error) {
	if len(shards) == 0 {
		return nil, errors.New("no shards")
	}
	p := &Placement{shards: append([]ShardWeight(nil), shards...)}
	seen := map[string]int{}
	for i, s := range shards {
		switch {
		case s.Name == "":
			return nil, fmt.Errorf("shards[%d].name: must be set", i)
		case !(s.Weight > 0) || math.IsInf(s.Weight, 0):
			return nil, fmt.Errorf("shards[%d].weight: must be a positive number, got %v", i, s.Weight)
		}
		if j, dup := seen[s.Name]; dup {
			return nil, fmt.Errorf("shards[%d].name: %q is also the name of shards[%d]", i, s.Name, j)
		}
		seen[s.Name] = i
		p.seeds = append(p.seeds, fnv64a(s.Name))
	}
	return p, nil
}

// Shards returns the shards, in the order given.
func (p *Placement) Shards() []ShardWeight { return append([]ShardWeight(nil), p.shards...) }

// Pick returns the index of the shard that owns key.
func (p *Placement) Pick(key string) int {
	k := fnv64a(key)
	best, bestScore := 0, math.Inf(-1)
	for i, s := range p.shards {
		// mix64 of (seed, key) is uniform; its top 53 bits give u in (0,1).
		u := (float64(mix64(p.seeds[i]^mix64(k))>>11) + 0.5) / (1 << 53)
		score := -s.Weight / math.Log(u)
		if score > bestScore {
			best, bestScore = i, score
		}
	}
	return best
}

// fnv64a is FNV-1a (hash/fnv's New64a) of s, without allocating.
func fnv64a(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// mix64 is splitmix64's finalizer: every input bit affects every output
// bit, so FNV's weak low bits do not bias the scores.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
