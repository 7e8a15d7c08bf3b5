package storage_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/storage"
)

// TestErrorsThroughFrontsSayEachHopOnce: a FindMissingBlobs through two
// storage fronts whose last backend is down fails with one "remote
// FindMissingBlobs" per hop, and no prefix repeated within a hop (each
// hop had said "find missing blobs: remote FindMissingBlobs: ").
func TestErrorsThroughFrontsSayEachHopOnce(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close() // nothing listens: the backend is down
	addr := deadAddr
	for range 2 {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := storage.NewServer(storage.ServerOptions{
			CAS: storage.NewRemoteBlobStore(grpctest.Dial(t, addr), storage.RemoteOptions{ForwardInstance: true}),
			AC:  storage.NewRemoteActionCache(grpctest.Dial(t, addr)),
		})
		grpctest.Start(t, lis, srv.Register, srv.GRPCServerOptions()...)
		addr = lis.Addr().String()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = repb.NewContentAddressableStorageClient(grpctest.Dial(t, addr)).FindMissingBlobs(ctx,
		&repb.FindMissingBlobsRequest{BlobDigests: []*repb.Digest{sha("behind two fronts").Proto()}})
	msg := status.Convert(err).Message()
	if err == nil || strings.Count(msg, "remote FindMissingBlobs") != 2 || strings.Contains(msg, "find missing blobs") {
		t.Fatalf("through two fronts: %v; want one \"remote FindMissingBlobs\" per hop and nothing repeated", err)
	}
}
