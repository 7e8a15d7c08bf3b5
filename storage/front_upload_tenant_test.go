package storage_test

import (
	"context"
	"slices"
	"testing"

	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"

	"github.com/paddock-build/paddock/auth"
	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/storage"
)

// TestUploadThroughAFrontNamesTheTenant: a ByteStream upload to a front
// (a scheduler's storage server over a remote store) reaches the storage
// behind it naming the caller's tenant, as every other call does. Before,
// the upload's Put ran on a bare context, without the caller: storage
// counted it as the scheduler's, outside the tenant's share of slots.
func TestUploadThroughAFrontNamesTheTenant(t *testing.T) {
	rec := &tenantsSeen{seen: map[string][]string{}}
	back := storage.NewServer(storage.ServerOptions{CAS: storage.NewMemoryBlobStore(), AC: storage.NewMemoryActionCache()})
	t.Cleanup(back.Close)
	backConn := grpctest.Dial(t, grpctest.Listen(t, back.Register,
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			rec.record(ss.Context(), info.FullMethod)
			return h(srv, ss)
		})))
	front := storage.NewServer(storage.ServerOptions{
		CAS: storage.NewRemoteBlobStore(backConn, storage.RemoteOptions{ForwardInstance: true}),
		AC:  storage.NewRemoteActionCache(backConn),
	})
	t.Cleanup(front.Close)
	teamA := &auth.Principal{Name: "team-a/ci", Tenant: "team-a"}
	frontConn := grpctest.Dial(t, grpctest.Listen(t, front.Register, append(front.GRPCServerOptions(),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			return h(srv, &principalStream{ss, auth.NewContext(ss.Context(), teamA)}) // as the front's auth would
		}))...))
	data, d := randData(t, 6<<20) // over the batch limit: by ByteStream
	stream, err := bytestream.NewByteStreamClient(frontConn).Write(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	name := "team-a/uploads/0b7ab4a4-2c4f-4d0b-9d59-2a2b7f0f7c11/blobs/" + d.String()
	for off := 0; off < len(data); off += 1 << 20 {
		req := &bytestream.WriteRequest{WriteOffset: int64(off), Data: data[off:min(off+1<<20, len(data))], FinishWrite: off+1<<20 >= len(data)}
		if off == 0 {
			req.ResourceName = name
		}
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
	if got := rec.take()["Write"]; !slices.Equal(got, []string{"team-a"}) {
		t.Fatalf("the upload reached the storage behind the front naming %q, want team-a", got)
	}
}

// principalStream is a server stream whose context carries a principal.
type principalStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *principalStream) Context() context.Context { return s.ctx }
