package grpclimit

import (
	"context"
	"testing"

	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// panicking panics in its handlers, as a bug would.
type panicking struct {
	*bytestream.UnimplementedByteStreamServer
}

func (panicking) QueryWriteStatus(context.Context, *bytestream.QueryWriteStatusRequest) (*bytestream.QueryWriteStatusResponse, error) {
	var s []byte
	_ = s[5:] // out of range
	return nil, nil
}

func (panicking) Read(req *bytestream.ReadRequest, _ bytestream.ByteStream_ReadServer) error {
	if req.ResourceName == "panic" {
		panic("a bug in a stream's handler")
	}
	return status.Error(codes.NotFound, "nothing here")
}

// TestAPanickingHandlerEndsOnlyItsCall: a handler that panics, unary or
// streaming, ends its call INTERNAL and the server goes on serving: a
// negative write_offset that indexed a slice out of range once took down
// every role of `paddock up` with one request.
func TestAPanickingHandlerEndsOnlyItsCall(t *testing.T) {
	addr := watchedServer(t, func(g *grpc.Server) {
		bytestream.RegisterByteStreamServer(g, panicking{&bytestream.UnimplementedByteStreamServer{}})
	})
	client, _ := dialCounting(t, addr)
	for range 2 {
		_, err := client.QueryWriteStatus(t.Context(), &bytestream.QueryWriteStatusRequest{ResourceName: "x"})
		if status.Code(err) != codes.Internal {
			t.Fatalf("a unary handler that panicked: %v, want INTERNAL", err)
		}
		stream, err := client.Read(t.Context(), &bytestream.ReadRequest{ResourceName: "panic"})
		if err == nil {
			_, err = stream.Recv()
		}
		if status.Code(err) != codes.Internal {
			t.Fatalf("a streaming handler that panicked: %v, want INTERNAL", err)
		}
	}
	stream, err := client.Read(t.Context(), &bytestream.ReadRequest{ResourceName: "fine"})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.NotFound {
		t.Fatalf("a call after the panics: %v, want the handler's NOT_FOUND", err)
	}
}
