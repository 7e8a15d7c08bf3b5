package remoterun_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	lpb "cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/bytestream"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/paddock-build/paddock/client"
	"github.com/paddock-build/paddock/internal/grpctest"
)

// hostileServer is a fake REv2 endpoint on loopback that answers every
// Execute with whatever the test says: the point of these tests is a
// server that lies. Its CAS serves blobs by hash, whatever the bytes (so
// a test can store bytes under a digest they do not hash to), and says it
// has every blob a client asks about, so nothing is uploaded.
type hostileServer struct {
	repb.UnimplementedContentAddressableStorageServer
	repb.UnimplementedExecutionServer
	bytestream.UnimplementedByteStreamServer

	// execute answers Execute; by default it sends result as done.
	execute func(repb.Execution_ExecuteServer) error
	result  *repb.ExecuteResponse

	mu    sync.Mutex
	blobs map[string][]byte
	// stall names blobs whose ByteStream read sends one byte and then
	// never ends.
	stall map[string]bool
	reads int
}

func startHostile(t *testing.T) (*hostileServer, *client.Client) {
	t.Helper()
	s := &hostileServer{blobs: map[string][]byte{}, stall: map[string]bool{}}
	addr := grpctest.Listen(t, func(g *grpc.Server) {
		repb.RegisterContentAddressableStorageServer(g, s)
		repb.RegisterExecutionServer(g, s)
		bytestream.RegisterByteStreamServer(g, s)
	})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return s, client.New(conn, client.Options{})
}

// put stores data under its own digest and returns it.
func (s *hostileServer) put(data []byte) *repb.Digest {
	b := client.NewBlob(data)
	s.putAs(b.Digest.Proto(), data)
	return b.Digest.Proto()
}

// putAs stores data under d, whether or not it hashes to d.
func (s *hostileServer) putAs(d *repb.Digest, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.blobs[d.Hash] = data
}

func (s *hostileServer) putProto(m proto.Message) *repb.Digest {
	b := client.ProtoBlob(m)
	return s.put(b.Data)
}

func (s *hostileServer) readCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads
}

func (s *hostileServer) FindMissingBlobs(context.Context, *repb.FindMissingBlobsRequest) (*repb.FindMissingBlobsResponse, error) {
	return &repb.FindMissingBlobsResponse{}, nil
}

func (s *hostileServer) BatchReadBlobs(_ context.Context, r *repb.BatchReadBlobsRequest) (*repb.BatchReadBlobsResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	out := &repb.BatchReadBlobsResponse{}
	for _, d := range r.Digests {
		data, ok := s.blobs[d.Hash]
		st := &spb.Status{}
		if !ok {
			st.Code = int32(codes.NotFound)
		}
		out.Responses = append(out.Responses, &repb.BatchReadBlobsResponse_Response{Digest: d, Data: data, Status: st})
	}
	return out, nil
}

func (s *hostileServer) Read(r *bytestream.ReadRequest, stream bytestream.ByteStream_ReadServer) error {
	parts := strings.Split(r.ResourceName, "/")
	hash := ""
	for i, p := range parts {
		if p == "blobs" && i+1 < len(parts) {
			hash = parts[i+1]
		}
	}
	s.mu.Lock()
	s.reads++
	data, ok := s.blobs[hash]
	stall := s.stall[hash]
	s.mu.Unlock()
	if stall {
		if err := stream.Send(&bytestream.ReadResponse{Data: []byte("x")}); err != nil {
			return err
		}
		<-stream.Context().Done()
		return stream.Context().Err()
	}
	if !ok {
		return status.Error(codes.NotFound, "no such blob")
	}
	for len(data) > 0 {
		n := min(len(data), 1<<20)
		if err := stream.Send(&bytestream.ReadResponse{Data: data[:n]}); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

func (s *hostileServer) Execute(_ *repb.ExecuteRequest, stream repb.Execution_ExecuteServer) error {
	if s.execute != nil {
		return s.execute(stream)
	}
	resp := s.result
	if resp == nil {
		resp = &repb.ExecuteResponse{Result: &repb.ActionResult{}}
	}
	a, err := anypb.New(resp)
	if err != nil {
		return err
	}
	return stream.Send(&lpb.Operation{Name: "op", Done: true, Result: &lpb.Operation_Response{Response: a}})
}

func (s *hostileServer) WaitExecution(*repb.WaitExecutionRequest, repb.Execution_WaitExecutionServer) error {
	return status.Error(codes.NotFound, "no such operation")
}
