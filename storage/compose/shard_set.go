package compose

import (
	"fmt"

	"github.com/paddock-build/paddock/digest"
)

// shardSet is a list of shards and the placement over them, picking a
// shard for a digest by blobKey. ShardedBlobStore and ShardedActionCache
// are both built on it so that, given the same shards, an action's cache
// entry is placed exactly as its Action blob is: one rule, not two copies
// that could drift apart.
type shardSet[S any] struct {
	place  *Placement
	shards []S
}

// newShardSet checks the shards' names and weights (weight reads them
// from a shard); what names the store in the error.
func newShardSet[S any](what string, shards []S, weight func(S) ShardWeight) (shardSet[S], error) {
	var ws []ShardWeight
	for _, s := range shards {
		ws = append(ws, weight(s))
	}
	p, err := NewPlacement(ws)
	if err != nil {
		return shardSet[S]{}, fmt.Errorf("%s: %w", what, err)
	}
	return shardSet[S]{place: p, shards: shards}, nil
}

// indexOf is the index in shards of the shard that holds d.
func (s shardSet[S]) indexOf(d digest.Digest) int { return s.place.Pick(blobKey(d)) }

// shardOf is the shard that holds d.
func (s shardSet[S]) shardOf(d digest.Digest) S { return s.shards[s.indexOf(d)] }
