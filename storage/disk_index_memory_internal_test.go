package storage

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"runtime"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/lru"
)

// BenchmarkDiskIndexMemoryPerBlob reports what the disk CAS's index takes
// in memory for each blob it holds (the figure docs/storage.md quotes):
// the heap in use before and after indexing 100,000 blobs, as start-up's
// scan does (a hash string of its own, an entry, the LRU's element and
// map slot), divided by their number.
//
//	go test ./storage -run '^$' -bench DiskIndexMemoryPerBlob -benchtime 1x
func BenchmarkDiskIndexMemoryPerBlob(b *testing.B) {
	const n = 100_000
	hashes := make([][sha256.Size]byte, n)
	for i := range hashes {
		var seed [8]byte
		binary.LittleEndian.PutUint64(seed[:], uint64(i))
		hashes[i] = sha256.Sum256(seed[:])
	}
	for range b.N {
		s := &DiskBlobStore{set: lru.New[blobKey, *diskEntry](), blockBytes: defaultBlockBytes}
		before := heapInUse()
		now := time.Now()
		for i := range hashes {
			d, err := digest.New(repb.DigestFunction_SHA256, hex.EncodeToString(hashes[i][:]), int64(i+1))
			if err != nil {
				b.Fatal(err)
			}
			s.index(&diskEntry{d: d, touched: now})
		}
		after := heapInUse()
		b.ReportMetric(float64(after-before)/n, "B/blob")
		runtime.KeepAlive(s)
	}
}

// heapInUse is the live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
