package storage_test

import (
	"context"
	"net"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"

	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/storage"
)

// TestForwardingLoopIsRefused: a storage whose remote backend is itself
// (or a scheduler whose --storage is its own port) refuses a call once it
// has gone round internal/hops.Max times, FAILED_PRECONDITION naming the
// loop. Before, each call made another without end: the client hung and
// the server's memory grew by gigabytes.
func TestForwardingLoopIsRefused(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	self := grpctest.Dial(t, lis.Addr().String())
	srv := storage.NewServer(storage.ServerOptions{
		CAS: storage.NewRemoteBlobStore(self, storage.RemoteOptions{ForwardInstance: true}),
		AC:  storage.NewRemoteActionCache(self),
	})
	grpctest.Start(t, lis, srv.Register, srv.GRPCServerOptions()...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cas := repb.NewContentAddressableStorageClient(self)
	_, err = cas.FindMissingBlobs(ctx, &repb.FindMissingBlobsRequest{BlobDigests: []*repb.Digest{sha("looped").Proto()}})
	wantStatus(t, err, codes.FailedPrecondition, "forwarding loop")
	_, err = repb.NewActionCacheClient(self).GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: sha("looped action").Proto()})
	wantStatus(t, err, codes.FailedPrecondition, "forwarding loop")
}
