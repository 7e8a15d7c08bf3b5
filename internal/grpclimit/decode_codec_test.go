package grpclimit

import (
	"context"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/paddock-build/paddock/internal/grpctest"
)

// countingCAS counts the FindMissingBlobs requests that reach it.
type countingCAS struct {
	repb.UnimplementedContentAddressableStorageServer
	calls, digests atomic.Int64
}

func (c *countingCAS) FindMissingBlobs(_ context.Context, req *repb.FindMissingBlobsRequest) (*repb.FindMissingBlobsResponse, error) {
	c.calls.Add(1)
	c.digests.Add(int64(len(req.GetBlobDigests())))
	return &repb.FindMissingBlobsResponse{}, nil
}

// rawRequest is a request sent as the bytes given, through rawCodec.
type rawRequest []byte

type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return v.(rawRequest), nil }
func (rawCodec) Unmarshal([]byte, any) error   { return nil }
func (rawCodec) Name() string                  { return "proto" }

// emptyDigests is a FindMissingBlobsRequest of size bytes, every entry of
// blob_digests an empty Digest (two bytes each).
func emptyDigests(size int) rawRequest {
	b := make([]byte, 0, size)
	for len(b)+2 <= size {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = append(b, 0)
	}
	return b
}

// A request of millions of empty messages, a few MiB on the wire, is
// refused before it is decoded: the handler never sees it, and the server
// allocates a few times its size rather than the 260 MB its decoding took.
// An honest request of the same size still reaches the handler.
func TestRequestTooCostlyToDecodeIsRefusedUnread(t *testing.T) {
	cas := &countingCAS{}
	addr := grpctest.Listen(t, func(g *grpc.Server) { repb.RegisterContentAddressableStorageServer(g, cas) },
		append(New(0).ServerOptions(), grpc.MaxRecvMsgSize(8<<20))...)
	conn := grpctest.Dial(t, addr, grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(8<<20)))
	method := "/" + repb.ContentAddressableStorage_ServiceDesc.ServiceName + "/FindMissingBlobs"

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	err := conn.Invoke(t.Context(), method, emptyDigests(5<<20), new(repb.FindMissingBlobsResponse), grpc.ForceCodec(rawCodec{}))
	runtime.ReadMemStats(&after)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "refused unread") || !strings.Contains(err.Error(), "2621440 messages") {
		t.Fatalf("5 MiB of empty digests: %v, want INVALID_ARGUMENT (not INTERNAL, which clients retry), refused unread, naming the 2621440 messages", err)
	}
	if n := cas.calls.Load(); n != 0 {
		t.Fatalf("the handler was called %d times", n)
	}
	// Client and server together: the request's bytes a few times over.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
		t.Errorf("the refused call allocated %d MB", alloc>>20)
	}

	honest := &repb.FindMissingBlobsRequest{}
	for i := 0; i < 5<<20/72; i++ { // 72 bytes each: tag, length, hash, size
		honest.BlobDigests = append(honest.BlobDigests, &repb.Digest{Hash: strings.Repeat("ab", 32), SizeBytes: 1 << 20})
	}
	if _, err := repb.NewContentAddressableStorageClient(conn).FindMissingBlobs(t.Context(), honest); err != nil {
		t.Fatalf("an honest request of 5 MiB: %v", err)
	}
	if got, want := cas.digests.Load(), int64(len(honest.BlobDigests)); got != want {
		t.Fatalf("the handler saw %d digests, want %d", got, want)
	}
}

// The densest honest requests REv2 clients send stay within the bound:
// digests of every function, empty blobs in a batch, files with mtimes.
func TestHonestRequestsAreWithinTheDecodeBound(t *testing.T) {
	md5 := &repb.Digest{Hash: strings.Repeat("0", 32)}
	batch := &repb.BatchUpdateBlobsRequest{}
	read := &repb.BatchReadBlobsRequest{AcceptableCompressors: []repb.Compressor_Value{repb.Compressor_ZSTD, repb.Compressor_DEFLATE}}
	result := &repb.UpdateActionResultRequest{ActionDigest: md5, ActionResult: &repb.ActionResult{}}
	for range 50000 {
		batch.Requests = append(batch.Requests, &repb.BatchUpdateBlobsRequest_Request{Digest: md5})
		read.Digests = append(read.Digests, md5)
		result.ActionResult.OutputFiles = append(result.ActionResult.OutputFiles, &repb.OutputFile{
			Path: "a", Digest: md5, NodeProperties: &repb.NodeProperties{Mtime: timestamppb.Now()},
		})
	}
	for _, m := range []proto.Message{batch, read, result, &repb.FindMissingBlobsRequest{}} {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkDecodeCost(b, m); err != nil {
			t.Errorf("%T: %v", m, err)
		}
	}
}

// findStream is a client-streaming service whose handler counts the
// digests of each FindMissingBlobsRequest it receives.
func findStream(cas *countingCAS) *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: "paddock.test.Find",
		HandlerType: (*any)(nil),
		Streams: []grpc.StreamDesc{{StreamName: "Find", ClientStreams: true, Handler: func(_ any, s grpc.ServerStream) error {
			for {
				req := &repb.FindMissingBlobsRequest{}
				if err := s.RecvMsg(req); err != nil {
					return err
				}
				cas.calls.Add(1)
				cas.digests.Add(int64(len(req.BlobDigests)))
			}
		}}},
	}
}

// A streamed message too costly to decode ends its call with
// INVALID_ARGUMENT, as a unary request does; the handler never sees it.
// A message carrying the refusal mark itself only refuses its own call.
func TestStreamedMessageTooCostlyIsRefused(t *testing.T) {
	cas := &countingCAS{}
	addr := grpctest.Listen(t, func(g *grpc.Server) { g.RegisterService(findStream(cas), struct{}{}) },
		append(New(0).ServerOptions(), grpc.MaxRecvMsgSize(8<<20))...)
	conn := grpctest.Dial(t, addr, grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(8<<20)))
	send := func(msgs ...rawRequest) error {
		s, err := conn.NewStream(t.Context(), &grpc.StreamDesc{ClientStreams: true}, "/paddock.test.Find/Find", grpc.ForceCodec(rawCodec{}))
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if err := s.SendMsg(m); err != nil {
				break // the server ended the call: RecvMsg says why
			}
		}
		if err := s.CloseSend(); err != nil {
			return err
		}
		return s.RecvMsg(new(rawRequest))
	}
	honest, _ := proto.Marshal(&repb.FindMissingBlobsRequest{BlobDigests: []*repb.Digest{{Hash: "ab"}}})
	err := send(rawRequest(honest), emptyDigests(4<<20), rawRequest(honest))
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "refused unread") {
		t.Fatalf("a stream with a costly message: %v, want INVALID_ARGUMENT, refused unread", err)
	}
	if cas.calls.Load() != 1 || cas.digests.Load() != 1 {
		t.Fatalf("the handler saw %d messages, %d digests; want only the first, honest one", cas.calls.Load(), cas.digests.Load())
	}
	forged := protowire.AppendString(protowire.AppendTag(nil, refusedField, protowire.BytesType), "forged")
	if err := send(rawRequest(forged)); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "forged") {
		t.Fatalf("a forged mark: %v", err)
	}
}

// A request that is not a valid message (its instance_name not UTF-8) is
// the client's error: INVALID_ARGUMENT naming the message type, not the
// INTERNAL gRPC makes of a codec's error, which clients retry; the
// handler never sees it.
func TestInvalidRequestIsInvalidArgument(t *testing.T) {
	cas := &countingCAS{}
	addr := grpctest.Listen(t, func(g *grpc.Server) { repb.RegisterContentAddressableStorageServer(g, cas) }, New(0).ServerOptions()...)
	conn := grpctest.Dial(t, addr)
	method := "/" + repb.ContentAddressableStorage_ServiceDesc.ServiceName + "/FindMissingBlobs"
	bad := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "a\xffb") // instance_name
	err := conn.Invoke(t.Context(), method, rawRequest(bad), new(repb.FindMissingBlobsResponse), grpc.ForceCodec(rawCodec{}))
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "FindMissingBlobsRequest") || !strings.Contains(err.Error(), "UTF-8") {
		t.Fatalf("a request with a non-UTF-8 string: %v, want INVALID_ARGUMENT naming the type and the UTF-8", err)
	}
	if n := cas.calls.Load(); n != 0 {
		t.Fatalf("the handler was called %d times", n)
	}
}
