package compose_test

import (
	"bytes"
	"context"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/storage/compose"
	"github.com/paddock-build/paddock/storage/storagetest"
)

func newRepairer(t testing.TB) *compose.Repairer {
	r := compose.NewRepairer(4, nil)
	t.Cleanup(r.Close)
	return r
}

func sharded(t testing.TB, stores ...storage.BlobStore) *compose.ShardedBlobStore {
	t.Helper()
	var shards []compose.BlobShard
	for i, s := range stores {
		shards = append(shards, compose.BlobShard{Name: "shard-" + string(rune('a'+i)), Weight: float64(1 + i%2), Store: s})
	}
	s, err := compose.NewShardedBlobStore(shards)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestShardedBlobStoreConformance(t *testing.T) {
	t.Run("RemoteNodes", func(t *testing.T) {
		storagetest.TestBlobStore(t, func(t *testing.T) storage.BlobStore {
			return sharded(t, startNode(t).cas(), startNode(t).cas(), startNode(t).cas())
		})
	})
	t.Run("DisksAndARemoteNode", func(t *testing.T) {
		storagetest.TestBlobStore(t, func(t *testing.T) storage.BlobStore {
			return sharded(t, newDisk(t, 0), startNode(t).cas(), newDisk(t, 0))
		})
	})
}

func TestShardedActionCacheConformance(t *testing.T) {
	storagetest.TestActionCache(t, func(t *testing.T) storage.ActionCache {
		var shards []compose.ACShard
		for i, name := range []string{"a", "b", "c"} {
			shards = append(shards, compose.ACShard{Name: name, Weight: float64(i + 1), Cache: startNode(t).ac()})
		}
		c, err := compose.NewShardedActionCache(shards)
		if err != nil {
			t.Fatal(err)
		}
		return c
	})
}

func TestMirroredBlobStoreConformance(t *testing.T) {
	t.Run("RemoteNodes", func(t *testing.T) {
		storagetest.TestBlobStore(t, func(t *testing.T) storage.BlobStore {
			return compose.NewMirroredBlobStore(compose.Mirror{Name: "a", Store: startNode(t).cas()},
				compose.Mirror{Name: "b", Store: startNode(t).cas()}, newRepairer(t), nil)
		})
	})
	t.Run("DiskAndRemoteNode", func(t *testing.T) {
		storagetest.TestBlobStore(t, func(t *testing.T) storage.BlobStore {
			return compose.NewMirroredBlobStore(compose.Mirror{Name: "a", Store: newDisk(t, 0)},
				compose.Mirror{Name: "b", Store: startNode(t).cas()}, newRepairer(t), nil)
		})
	})
}

func TestMirroredActionCacheConformance(t *testing.T) {
	storagetest.TestActionCache(t, func(t *testing.T) storage.ActionCache {
		return compose.NewMirroredActionCache(compose.ACMirror{Name: "a", Cache: startNode(t).ac()},
			compose.ACMirror{Name: "b", Cache: newDiskAC(t)}, newRepairer(t), nil)
	})
}

func TestCachedBlobStoreConformance(t *testing.T) {
	t.Run("RemoteNode", func(t *testing.T) {
		storagetest.TestBlobStore(t, func(t *testing.T) storage.BlobStore {
			return compose.NewCachedBlobStore(newDisk(t, 8<<20), startNode(t).cas(), "remote", nil)
		})
	})
	// A cache smaller than some blobs reads them past itself.
	t.Run("TinyCache", func(t *testing.T) {
		storagetest.TestBlobStore(t, func(t *testing.T) storage.BlobStore {
			return compose.NewCachedBlobStore(newDisk(t, 1<<20), startNode(t).cas(), "remote", nil)
		})
	})
}

// The composites nest: a cache in front of shards, one of them a
// mirrored pair of remote nodes.
func TestNestedConformance(t *testing.T) {
	storagetest.TestBlobStore(t, func(t *testing.T) storage.BlobStore {
		pair := compose.NewMirroredBlobStore(compose.Mirror{Name: "m0", Store: startNode(t).cas()},
			compose.Mirror{Name: "m1", Store: startNode(t).cas()}, newRepairer(t), nil)
		return compose.NewCachedBlobStore(newDisk(t, 16<<20), sharded(t, pair, startNode(t).cas()), "shards", nil)
	})
}

func putBytes(t testing.TB, s storage.BlobStore, data []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(repb.DigestFunction_SHA256, data)
	if err := s.Put(context.Background(), d, bytes.NewReader(data)); err != nil {
		t.Fatalf("Put %s: %v", d, err)
	}
	return d
}
