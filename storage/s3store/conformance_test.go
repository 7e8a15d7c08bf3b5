package s3store_test

import (
	"testing"

	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/storage/s3store"
	"github.com/paddock-build/paddock/storage/storagetest"
)

// The conformance suites run against a real SeaweedFS server.
func TestBlobStoreConformance(t *testing.T) {
	b := startBucket(t)
	storagetest.TestBlobStore(t, func(t *testing.T) storage.BlobStore {
		c, _ := b.client(t)
		return s3store.NewBlobStore(c)
	})
}

func TestActionCacheConformance(t *testing.T) {
	b := startBucket(t)
	storagetest.TestActionCache(t, func(t *testing.T) storage.ActionCache {
		c, _ := b.client(t)
		return s3store.NewActionCache(c)
	})
}
