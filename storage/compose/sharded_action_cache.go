package compose

import (
	"context"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// ACShard is one shard of a ShardedActionCache.
type ACShard struct {
	Name   string
	Weight float64
	Cache  storage.ActionCache
}

// ShardedActionCache spreads action cache entries over shards by the
// action digest, with the same placement as ShardedBlobStore: given the
// same shards, an entry lives on the shard that holds its Action blob.
// Instance names are passed through; each shard partitions by them.
type ShardedActionCache struct {
	shardSet[ACShard]
}

// NewShardedActionCache checks the shards and returns the cache.
func NewShardedActionCache(shards []ACShard) (*ShardedActionCache, error) {
	set, err := newShardSet("sharded action cache", shards, func(s ACShard) ShardWeight { return ShardWeight{s.Name, s.Weight} })
	if err != nil {
		return nil, err
	}
	return &ShardedActionCache{set}, nil
}

// Get implements storage.ActionCache.
func (c *ShardedActionCache) Get(ctx context.Context, instance string, action digest.Digest) (*repb.ActionResult, error) {
	sh := c.shardOf(action)
	r, err := sh.Cache.Get(ctx, instance, action)
	return r, backendError(sh.Name, err)
}

// Put implements storage.ActionCache.
func (c *ShardedActionCache) Put(ctx context.Context, instance string, action digest.Digest, result *repb.ActionResult) error {
	sh := c.shardOf(action)
	return backendError(sh.Name, sh.Cache.Put(ctx, instance, action, result))
}

var _ storage.ActionCache = (*ShardedActionCache)(nil)
