package storage_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"golang.org/x/sync/errgroup"
	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/storage"
)

// BenchmarkByteStreamBurstOfSmallUploads is Bazel uploading the inputs of
// one large action: 20,000 small blobs, each on its own ByteStream Write,
// over 10 connections, against a server with 64 slots (a quarter of an
// open-file limit of 256), with twice as many uploads in flight as slots
// (Bazel's case: 100 connections of 100 streams against 5,000 slots) and
// sixteen times (past the queue of four waiters a slot). A refused upload
// is retried as Bazel 4.2.3 does: backoff from 100 ms, doubling up to
// 5 s, with 10% jitter, 5 retries. It reports the refusals and the uploads
// that ran out of retries; ns/op is the burst. Figures are in
// docs/benchmarks.md.
func BenchmarkByteStreamBurstOfSmallUploads(b *testing.B) {
	const blobs, conns, slots = 20_000, 10, 64
	for _, inFlight := range []int{2 * slots, 16 * slots} {
		b.Run(fmt.Sprintf("in-flight=%d", inFlight), func(b *testing.B) {
			cas, ac := diskStores(b, b.TempDir())
			addr := serveLoopback(b, storage.ServerOptions{CAS: cas, AC: ac, MaxOpenStreams: slots})
			var clients []bytestream.ByteStreamClient
			for range conns {
				clients = append(clients, bytestream.NewByteStreamClient(grpctest.Dial(b, addr)))
			}
			var refused, failed atomic.Int64
			b.ResetTimer()
			for i := range b.N {
				var g errgroup.Group
				g.SetLimit(inFlight)
				for j := range blobs {
					data := fmt.Appendf(nil, "burst %d input %d of a large action", i, j)
					d := digest.FromBytes(repb.DigestFunction_SHA256, data)
					bs := clients[j%conns]
					g.Go(func() error {
						if err := uploadRetrying(b.Context(), bs, d, data, &refused); err != nil {
							failed.Add(1)
						}
						return nil
					})
				}
				_ = g.Wait() // the uploads return nil: failures are counted in failed
			}
			b.ReportMetric(float64(refused.Load())/float64(b.N), "refused/op")
			b.ReportMetric(float64(failed.Load())/float64(b.N), "failed/op")
		})
	}
}

// uploadRetrying uploads data, retrying RESOURCE_EXHAUSTED with Bazel's
// backoff (RemoteRetrier's defaults), and counts the refusals.
func uploadRetrying(ctx context.Context, bs bytestream.ByteStreamClient, d digest.Digest, data []byte, refused *atomic.Int64) error {
	delay := 100 * time.Millisecond
	name := fmt.Sprintf("uploads/%s/blobs/%s/%d", "bench", d.Hash(), d.SizeBytes())
	for attempt := 0; ; attempt++ {
		err := uploadWhole(bs, name, data)
		if status.Code(err) != codes.ResourceExhausted || attempt == 5 {
			return err
		}
		refused.Add(1)
		jitter := 1 + 0.1*(2*rand.Float64()-1)
		select {
		case <-time.After(time.Duration(float64(delay) * jitter)):
		case <-ctx.Done():
			return ctx.Err()
		}
		delay = min(2*delay, 5*time.Second)
	}
}
