// Package storage is Paddock's content-addressable storage (CAS) and action
// cache (AC), and the REv2 gRPC services that expose them.
//
// Lifecycle: cmd builds one BlobStore and one ActionCache (on local disk, in
// memory for tests, or over a remote REv2 endpoint), hands them to NewServer,
// and registers the server on a grpc.Server. The services validate every
// request (digests, resource names, sizes) before touching a store, and map
// errors to gRPC codes at that edge; the stores themselves already return
// gRPC status errors where the meaning is known (NOT_FOUND, INVALID_ARGUMENT,
// RESOURCE_EXHAUSTED).
//
// The CAS is shared by all instance names (blobs are content-addressed and
// verified, so one tenant cannot alter another's), while action cache
// entries are partitioned by instance name.
package storage

import (
	"context"
	"io"

	"github.com/paddock-build/paddock/digest"
)

// BlobStore is the CAS. Implementations: DiskBlobStore (the embedded
// default), MemoryBlobStore (tests) and RemoteBlobStore (another REv2
// endpoint). All must pass storagetest.TestBlobStore.
//
// The empty blob is always present: implementations answer it from
// FindMissing as present and Get as empty without storing it.
type BlobStore interface {
	// FindMissing returns those of ds that are not stored, in input order.
	FindMissing(ctx context.Context, ds []digest.Digest) ([]digest.Digest, error)
	// Get opens d for reading from offset (0 ≤ offset ≤ size). A missing blob
	// is NOT_FOUND. The reader yields exactly size-offset bytes; if the
	// stored bytes turn out not to match d, the final Read returns a DATA_LOSS
	// error instead of io.EOF, so a corrupt blob is never delivered whole.
	Get(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, error)
	// Put stores the blob whose bytes r yields. If they do not hash to d or
	// are not d's size, Put returns INVALID_ARGUMENT and stores nothing.
	// Writes of the same blob may run concurrently.
	Put(ctx context.Context, d digest.Digest, r io.Reader) error
}

// Batcher is implemented by stores that can move many small blobs in one
// round trip (RemoteBlobStore, with BatchReadBlobs and BatchUpdateBlobs).
// The worker uses it so that an input root or an action's outputs of many
// small files cost a few requests instead of one each.
type Batcher interface {
	// GetMany reads the blobs ds, of at most MaxBatchBytes in all. Blobs
	// that are missing are absent from the result; every blob returned has
	// been checked against its digest.
	GetMany(ctx context.Context, ds []digest.Digest) (map[digest.Digest][]byte, error)
	// PutMany stores blobs, of at most MaxBatchBytes in all; each must
	// match its digest (INVALID_ARGUMENT otherwise).
	PutMany(ctx context.Context, blobs map[digest.Digest][]byte) error
	// MaxBatchBytes is the largest total of one GetMany or PutMany call.
	MaxBatchBytes() int64
}
