package worker_test

import (
	"bytes"
	"context"
	"testing"

	"google.golang.org/grpc"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/worker"
)

// BenchmarkStorageCallWhenUp compares calls to a storage that answers,
// over loopback, on a plain connection and on one with the worker's
// StorageDialOptions: the wait for storage must cost nothing (no time, no
// allocation) on the hot path where storage is up. FindMissingBlobs is a
// unary call; a Get of a blob past the batch size is a ByteStream Read.
func BenchmarkStorageCallWhenUp(b *testing.B) {
	backing := storage.NewMemoryBlobStore()
	small, large := []byte("small blob"), bytes.Repeat([]byte("x"), 64<<10)
	var ds []digest.Digest
	for _, data := range [][]byte{small, large} {
		d := digest.FromBytes(sha256, data)
		if err := backing.Put(context.Background(), d, bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
		ds = append(ds, d)
	}
	srv := storage.NewServer(storage.ServerOptions{CAS: backing, AC: storage.NewMemoryActionCache()})
	addr := grpctest.Listen(b, srv.Register)
	for _, c := range []struct {
		name string
		opts []grpc.DialOption
	}{{"plain", nil}, {"waiting", worker.StorageDialOptions(worker.StorageWaitOptions{})}} {
		cas := storage.NewRemoteBlobStore(grpctest.Dial(b, addr, c.opts...), storage.RemoteOptions{MaxBatchBytes: 4 << 10})
		b.Run(c.name+"/FindMissing", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := cas.FindMissing(context.Background(), ds[:1]); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/Read", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r, err := cas.Get(context.Background(), ds[1], 0)
				if err != nil {
					b.Fatal(err)
				}
				r.Close()
			}
		})
	}
}
