package storage_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/paddock-build/paddock/digest"
)

// BenchmarkPutEvictingManySmallBlobs times a Put that evicts 10,000 small
// blobs (a CAS's whole bound) while FindMissing is called over and over,
// and reports the slowest of those calls (find-missing-max-ms). The
// evicted files are removed outside the store's lock, so that stays far
// below the Put's own time; when they were removed under it, a FindMissing
// issued during the Put took as long as the Put.
func BenchmarkPutEvictingManySmallBlobs(b *testing.B) {
	const n, size = 10000, 64
	ctx := context.Background()
	var worst time.Duration
	for range b.N {
		b.StopTimer()
		s := newDisk(b, b.TempDir(), n*size)
		var ds []digest.Digest
		for i := range n {
			data, d := blobOf(i, size)
			if err := s.Put(ctx, d, bytes.NewReader(data)); err != nil {
				b.Fatal(err)
			}
			ds = append(ds, d)
		}
		big, bigD := blobOf(n, n*size)
		done := make(chan error, 1)
		b.StartTimer()
		go func() { done <- s.Put(ctx, bigD, bytes.NewReader(big)) }()
		for running := true; running; {
			select {
			case err := <-done:
				if err != nil {
					b.Fatal(err)
				}
				running = false
			default:
				start := time.Now()
				if _, err := s.FindMissing(ctx, ds[n-8:]); err != nil {
					b.Fatal(err)
				}
				worst = max(worst, time.Since(start))
			}
		}
	}
	b.ReportMetric(float64(worst.Microseconds())/1000, "find-missing-max-ms")
}
