package storage

import (
	"context"

	"golang.org/x/sync/semaphore"
	"google.golang.org/grpc/status"
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

// decodedFactor is what a blob read whole costs, in times its size: the
// budget counts each blob at that.
const decodedFactor = 3

var requestMemory = semaphore.NewWeighted(RequestMemoryBytes)

// HoldMemory waits until blobs of blobBytes in all, read whole, fit in the
// budget, or ctx ends, and returns the function that gives their share
// back. More than the whole budget waits for the whole of it; nothing
// (blobBytes ≤ 0) waits for nothing. A caller must not hold twice at once:
// two holders each waiting for the rest could wait for ever.
func HoldMemory(ctx context.Context, blobBytes int64) (func(), error) {
	if blobBytes <= 0 {
		return func() {}, nil
	}
	n := int64(RequestMemoryBytes)
	if blobBytes < RequestMemoryBytes/decodedFactor {
		n = blobBytes * decodedFactor
	}
	if err := requestMemory.Acquire(ctx, n); err != nil {
		return nil, status.FromContextError(err).Err()
	}
	return func() { requestMemory.Release(n) }, nil
}
