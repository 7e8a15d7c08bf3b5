package storage

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/paddock-build/paddock/digest"
)

type instanceKey struct{}

// WithInstance returns ctx saying which instance name its CAS calls are
// for. The services set it from each request; the worker sets it from its
// assignment; a PartitionedBlobStore picks the partition by it, and a
// RemoteBlobStore sends it as the requests' instance_name.
func WithInstance(ctx context.Context, instance string) context.Context {
	return context.WithValue(ctx, instanceKey{}, instance)
}

// InstanceFrom returns the instance name WithInstance put in ctx.
func InstanceFrom(ctx context.Context) (string, bool) {
	s, ok := ctx.Value(instanceKey{}).(string)
	return s, ok
}

// PartitionedBlobStore keeps one CAS per partition, so that a tenant sees
// only blobs stored in its own: a blob of another partition is missing
// for FindMissing and Get alike, and its bytes are another file, which no
// hard link of another partition can reach. The partition of a call is
// PartitionOf(instance name of its context). Partition stores are opened
// on first use and kept; safe for concurrent use.
type PartitionedBlobStore struct {
	partitionOf func(instance string) string
	open        func(partition string) (BlobStore, error)

	mu     sync.Mutex
	stores map[string]BlobStore
}

// NewPartitionedBlobStore returns a store that maps instance names to
// partitions with partitionOf and opens a partition's store with open.
func NewPartitionedBlobStore(partitionOf func(instance string) string, open func(partition string) (BlobStore, error)) *PartitionedBlobStore {
	return &PartitionedBlobStore{partitionOf: partitionOf, open: open, stores: map[string]BlobStore{}}
}

// For returns the store of ctx's partition.
func (p *PartitionedBlobStore) For(ctx context.Context) (BlobStore, error) {
	instance, _ := InstanceFrom(ctx)
	name := p.partitionOf(instance)
	p.mu.Lock()
	defer p.mu.Unlock()
	if s := p.stores[name]; s != nil {
		return s, nil
	}
	s, err := p.open(name)
	if err != nil {
		return nil, fmt.Errorf("open CAS partition %q: %w", name, err)
	}
	p.stores[name] = s
	return s, nil
}

// FindMissing implements BlobStore.
func (p *PartitionedBlobStore) FindMissing(ctx context.Context, ds []digest.Digest) ([]digest.Digest, error) {
	s, err := p.For(ctx)
	if err != nil {
		return nil, err
	}
	return s.FindMissing(ctx, ds)
}

// Get implements BlobStore.
func (p *PartitionedBlobStore) Get(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, error) {
	s, err := p.For(ctx)
	if err != nil {
		return nil, err
	}
	return s.Get(ctx, d, offset)
}

// Put implements BlobStore.
func (p *PartitionedBlobStore) Put(ctx context.Context, d digest.Digest, r io.Reader) error {
	s, err := p.For(ctx)
	if err != nil {
		return err
	}
	return s.Put(ctx, d, r)
}
