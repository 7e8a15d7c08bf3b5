package compose

import (
	"context"
	"io"

	"golang.org/x/sync/errgroup"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// BlobShard is one shard of a ShardedBlobStore.
type BlobShard struct {
	// Name identifies the shard in placement and in errors; renaming a
	// shard moves its keys.
	Name   string
	Weight float64
	Store  storage.BlobStore
}

// ShardedBlobStore spreads blobs over shards by weighted rendezvous
// hashing of their digest function and hash (see Placement): each blob
// lives on exactly one shard, so a shard that is down makes its blobs
// UNAVAILABLE (naming the shard) while the others keep working, and
// calls succeed again once it is back. Put the shards behind mirrors if
// their blobs must outlive a machine.
type ShardedBlobStore struct {
	shardSet[BlobShard]
}

// NewShardedBlobStore checks the shards' names and weights and returns
// the store.
func NewShardedBlobStore(shards []BlobShard) (*ShardedBlobStore, error) {
	set, err := newShardSet("sharded CAS", shards, func(s BlobShard) ShardWeight { return ShardWeight{s.Name, s.Weight} })
	if err != nil {
		return nil, err
	}
	return &ShardedBlobStore{set}, nil
}

// blobKey is the placement key of a blob. The size is left out so that
// digests of one hash land together (one shard answers that a hash of
// another size is missing); the function is kept so that blobs hashed by
// different functions spread independently.
func blobKey(d digest.Digest) string { return d.Function().String() + "/" + d.Hash() }

// FindMissing implements storage.BlobStore: the digests are split by
// shard and the shards asked concurrently. One shard's failure fails the
// call, naming it: its blobs cannot be said to be present or missing.
func (s *ShardedBlobStore) FindMissing(ctx context.Context, ds []digest.Digest) ([]digest.Digest, error) {
	groups := make([][]digest.Digest, len(s.shards))
	for _, d := range ds {
		if d.IsEmpty() {
			continue // REv2: always available, whether its shard is up or not
		}
		i := s.indexOf(d)
		groups[i] = append(groups[i], d)
	}
	missing := make([][]digest.Digest, len(s.shards))
	g, gctx := errgroup.WithContext(ctx)
	for i, group := range groups {
		if len(group) == 0 {
			continue
		}
		g.Go(func() error {
			m, err := s.shards[i].Store.FindMissing(gctx, group)
			missing[i] = m
			return backendError(s.shards[i].Name, err)
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	set := map[digest.Digest]bool{}
	for _, m := range missing {
		for _, d := range m {
			set[d] = true
		}
	}
	var out []digest.Digest
	for _, d := range ds {
		if set[d] {
			out = append(out, d)
		}
	}
	return out, nil
}

// Get implements storage.BlobStore.
func (s *ShardedBlobStore) Get(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, error) {
	sh := s.shardOf(d)
	r, err := sh.Store.Get(ctx, d, offset)
	if err != nil {
		return nil, backendError(sh.Name, err)
	}
	return namedReader{r, sh.Name}, nil
}

// Put implements storage.BlobStore.
func (s *ShardedBlobStore) Put(ctx context.Context, d digest.Digest, r io.Reader) error {
	sh := s.shardOf(d)
	return backendError(sh.Name, sh.Store.Put(ctx, d, r))
}

var _ storage.BlobStore = (*ShardedBlobStore)(nil)
