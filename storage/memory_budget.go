package storage

import (
	"context"
	"sync"

	"golang.org/x/sync/semaphore"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/auth"
)

// RequestMemoryBytes is the process's budget for blobs that requests have
// it read whole into memory: the Trees a cache lookup checks
// (CheckComplete), the Action and Command each Execute validates. Any
// client can repeat such a request at will, and each copy costs the
// server the blob's size a few times over (the bytes, the message decoded
// from them, what is kept of it), so without a common bound twenty
// concurrent lookups of a result with a 61 MiB Tree took `paddock up` to
// 4.6 GB. Requests wait for their share in turn.
const RequestMemoryBytes = 256 << 20

// decodedFactor is what a blob read whole costs, in times its size (its
// bytes, the message decoded from them, what is kept of it): the budget
// counts each blob at that. Honest blobs take 1.7 to 2.9 times their size
// once decoded; no blob decodes past blobDecodeFactor, so what the budget
// holds is at most (1+blobDecodeFactor)/decodedFactor, under four times,
// what it counts.
const decodedFactor = 3

var requestMemory = newMemoryBudget(RequestMemoryBytes)

// memoryBudget bounds the bytes its holders keep at once. A tenant of the
// auth policy holds at most half of it, so that one tenant's calls, stuck
// or slow, leave the others half; callers without a tenant count only
// against the whole.
type memoryBudget struct {
	size    int64
	all     *semaphore.Weighted
	mu      sync.Mutex
	tenants map[string]*semaphore.Weighted
}

func newMemoryBudget(size int64) *memoryBudget {
	return &memoryBudget{size: size, all: semaphore.NewWeighted(size), tenants: map[string]*semaphore.Weighted{}}
}

func (b *memoryBudget) tenantShare(tenant string) *semaphore.Weighted {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.tenants[tenant]
	if s == nil {
		s = semaphore.NewWeighted(b.size / 2)
		b.tenants[tenant] = s
	}
	return s
}

// hold waits until blobs of blobBytes in all, read whole, fit, or ctx
// ends, and returns the function that gives their share back. More than
// the budget (or the tenant's half) waits for all of it; nothing waits
// for nothing. The tenant's share is taken before the whole's, always in
// that order, so holders never wait on each other in a circle; but a
// caller must not hold twice at once.
func (b *memoryBudget) hold(ctx context.Context, blobBytes int64) (func(), error) {
	if blobBytes <= 0 {
		return func() {}, nil
	}
	n := b.size
	if blobBytes < b.size/decodedFactor {
		n = blobBytes * decodedFactor
	}
	return b.holdBytes(ctx, n)
}

// holdBytes is hold for n bytes of memory as they are, not blobs to be
// decoded.
func (b *memoryBudget) holdBytes(ctx context.Context, n int64) (func(), error) {
	if n <= 0 {
		return func() {}, nil
	}
	n = min(n, b.size)
	var share *semaphore.Weighted
	if tenant := auth.TenantOf(ctx); tenant != "" {
		share = b.tenantShare(tenant)
		n = min(n, b.size/2)
		if err := share.Acquire(ctx, n); err != nil {
			return nil, status.FromContextError(err).Err()
		}
	}
	if err := b.all.Acquire(ctx, n); err != nil {
		if share != nil {
			share.Release(n)
		}
		return nil, status.FromContextError(err).Err()
	}
	return func() {
		b.all.Release(n)
		if share != nil {
			share.Release(n)
		}
	}, nil
}

// HoldMemory holds blobs of blobBytes read whole for a request in the
// process's budget for them (RequestMemoryBytes), waiting for room or for
// ctx to end, and returns the function that gives the share back.
func HoldMemory(ctx context.Context, blobBytes int64) (func(), error) {
	return requestMemory.hold(ctx, blobBytes)
}
