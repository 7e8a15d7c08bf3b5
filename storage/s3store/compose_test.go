package s3store_test

import (
	"testing"

	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/storage/compose"
	"github.com/paddock-build/paddock/storage/s3store"
	"github.com/paddock-build/paddock/storage/storagetest"
)

// The composites over S3 pass the conformance suite too: a local disk
// cache in front of a bucket, and a sharded set whose shards are two
// prefixes of it (as two buckets would be), on the real SeaweedFS.
func TestCachedOverS3Conformance(t *testing.T) {
	b := startBucket(t)
	storagetest.TestBlobStore(t, func(t *testing.T) storage.BlobStore {
		cache, err := storage.NewDiskBlobStore(storage.DiskOptions{Dir: t.TempDir(), MaxBytes: 8 << 20})
		if err != nil {
			t.Fatal(err)
		}
		c, _ := b.client(t)
		return compose.NewCachedBlobStore(cache, s3store.NewBlobStore(c), "s3", nil)
	})
}

func TestShardedOverS3Conformance(t *testing.T) {
	b := startBucket(t)
	storagetest.TestBlobStore(t, func(t *testing.T) storage.BlobStore {
		var shards []compose.BlobShard
		for _, name := range []string{"a", "b"} {
			c, _ := b.client(t)
			shards = append(shards, compose.BlobShard{Name: name, Weight: 1, Store: s3store.NewBlobStore(c)})
		}
		s, err := compose.NewShardedBlobStore(shards)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
	storagetest.TestActionCache(t, func(t *testing.T) storage.ActionCache {
		var shards []compose.ACShard
		for _, name := range []string{"a", "b"} {
			c, _ := b.client(t)
			shards = append(shards, compose.ACShard{Name: name, Weight: 1, Cache: s3store.NewActionCache(c)})
		}
		s, err := compose.NewShardedActionCache(shards)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
