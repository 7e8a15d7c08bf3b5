package storage

import (
	"bytes"
	"context"
	"io"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
)

// MemoryBlobStore keeps blobs in a map with no size bound. It exists for
// tests of the packages built on storage, and is safe for concurrent use.
type MemoryBlobStore struct {
	mu    sync.RWMutex
	blobs map[digest.Digest][]byte
}

// NewMemoryBlobStore returns an empty store.
func NewMemoryBlobStore() *MemoryBlobStore {
	return &MemoryBlobStore{blobs: map[digest.Digest][]byte{}}
}

// FindMissing implements BlobStore.
func (s *MemoryBlobStore) FindMissing(ctx context.Context, ds []digest.Digest) ([]digest.Digest, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var missing []digest.Digest
	for _, d := range ds {
		if _, ok := s.blobs[d]; !ok && !d.IsEmpty() {
			missing = append(missing, d)
		}
	}
	return missing, nil
}

// Get implements BlobStore.
func (s *MemoryBlobStore) Get(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, error) {
	if err := CheckOffset(d, offset); err != nil {
		return nil, err
	}
	s.mu.RLock()
	b, ok := s.blobs[d]
	s.mu.RUnlock()
	if !ok && !d.IsEmpty() {
		return nil, status.Errorf(codes.NotFound, "blob %s not found", d)
	}
	return io.NopCloser(bytes.NewReader(b[offset:])), nil
}

// Put implements BlobStore.
func (s *MemoryBlobStore) Put(ctx context.Context, d digest.Digest, r io.Reader) error {
	b, err := io.ReadAll(io.LimitReader(r, d.SizeBytes()+1))
	if err != nil {
		return err
	}
	if got := digest.FromBytes(d.Function(), b); got != d {
		return status.Errorf(codes.InvalidArgument, "data hash to %s, not %s", got, d)
	}
	s.mu.Lock()
	s.blobs[d] = b
	s.mu.Unlock()
	return nil
}

// Delete removes a blob; tests use it to simulate eviction.
func (s *MemoryBlobStore) Delete(d digest.Digest) {
	s.mu.Lock()
	delete(s.blobs, d)
	s.mu.Unlock()
}
