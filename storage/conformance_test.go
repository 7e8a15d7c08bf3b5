package storage_test

import (
	"testing"

	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/storage/storagetest"
)

func TestMemoryBlobStoreConformance(t *testing.T) {
	storagetest.TestBlobStore(t, func(t *testing.T) storage.BlobStore { return storage.NewMemoryBlobStore() })
}

func TestMemoryActionCacheConformance(t *testing.T) {
	storagetest.TestActionCache(t, func(t *testing.T) storage.ActionCache { return storage.NewMemoryActionCache() })
}

func TestDiskBlobStoreConformance(t *testing.T) {
	storagetest.TestBlobStore(t, func(t *testing.T) storage.BlobStore { return newDisk(t, t.TempDir(), 0) })
}

func TestDiskActionCacheConformance(t *testing.T) {
	storagetest.TestActionCache(t, func(t *testing.T) storage.ActionCache {
		c, err := storage.NewDiskActionCache(t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		return c
	})
}

// The remote backends are tested against our own server on loopback, with
// a disk backend behind it.
func TestRemoteBlobStoreConformance(t *testing.T) {
	storagetest.TestBlobStore(t, func(t *testing.T) storage.BlobStore {
		srv := startServer(t, storage.ServerOptions{})
		return storage.NewRemoteBlobStore(srv.conn, storage.RemoteOptions{})
	})
}

func TestRemoteActionCacheConformance(t *testing.T) {
	storagetest.TestActionCache(t, func(t *testing.T) storage.ActionCache {
		srv := startServer(t, storage.ServerOptions{})
		// The server refuses results for Actions its CAS does not hold.
		putString(t, srv.disk, "action")
		return storage.NewRemoteActionCache(srv.conn)
	})
}
