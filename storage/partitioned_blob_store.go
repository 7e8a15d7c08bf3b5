package storage

import (
	"context"
	"fmt"
	"io"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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
// on first use and kept; safe for concurrent use. A partition is opened
// outside the lock, while the calls for it wait and every other
// partition's go on: opening a disk CAS lists its blobs, and a tenant's
// 1.3 million blobs froze every tenant's storage calls for 18 s after
// each restart, at the first call of that tenant.
type PartitionedBlobStore struct {
	partitionOf func(instance string) string
	open        func(partition string) (BlobStore, error)

	mu     sync.Mutex
	stores map[string]*partitionStore
}

// partitionStore is one partition's store, once ready is closed: s, or
// the error that opening it gave.
type partitionStore struct {
	ready chan struct{}
	s     BlobStore
	err   error
}

// NewPartitionedBlobStore returns a store that maps instance names to
// partitions with partitionOf and opens a partition's store with open.
func NewPartitionedBlobStore(partitionOf func(instance string) string, open func(partition string) (BlobStore, error)) *PartitionedBlobStore {
	return &PartitionedBlobStore{partitionOf: partitionOf, open: open, stores: map[string]*partitionStore{}}
}

// For returns the store of ctx's partition.
func (p *PartitionedBlobStore) For(ctx context.Context) (BlobStore, error) {
	instance, _ := InstanceFrom(ctx)
	name := p.partitionOf(instance)
	p.mu.Lock()
	ps := p.stores[name]
	opener := ps == nil
	if opener {
		ps = &partitionStore{ready: make(chan struct{})}
		p.stores[name] = ps
	}
	p.mu.Unlock()
	if opener {
		if ps.s, ps.err = p.open(name); ps.err != nil {
			ps.err = fmt.Errorf("open CAS partition %q: %w", name, ps.err)
			p.mu.Lock()
			delete(p.stores, name) // the next call tries again
			p.mu.Unlock()
		}
		close(ps.ready)
	}
	select {
	case <-ps.ready:
		return ps.s, ps.err
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
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

// opened returns the partitions opened so far, by name: those still
// opening, or that failed to, are not among them.
func (p *PartitionedBlobStore) opened() map[string]BlobStore {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]BlobStore, len(p.stores))
	for name, ps := range p.stores {
		select {
		case <-ps.ready:
			if ps.err == nil {
				out[name] = ps.s
			}
		default:
		}
	}
	return out
}

// MakeRoom asks the partition of ctx's instance name (the action that
// found the disk full) for need bytes, and no other: asked of every
// partition in turn, one tenant's action that filled the disk emptied
// another tenant's partition in one attempt (outside probe), where its
// uploads evict only from its own.
func (p *PartitionedBlobStore) MakeRoom(ctx context.Context, need int64) error {
	s, err := p.For(ctx)
	if err != nil {
		return err
	}
	r, ok := s.(interface {
		MakeRoom(context.Context, int64) error
	})
	if !ok {
		return status.Error(codes.ResourceExhausted, "the CAS partition cannot give room back")
	}
	return r.MakeRoom(ctx, need)
}
