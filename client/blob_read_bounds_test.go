package client

import (
	"bytes"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/grpctest"
)

// stallingByteStream sends the first byte of any blob and then nothing
// until its client goes away.
type stallingByteStream struct {
	bytestream.UnimplementedByteStreamServer
}

func (*stallingByteStream) Read(_ *bytestream.ReadRequest, stream bytestream.ByteStream_ReadServer) error {
	if err := stream.Send(&bytestream.ReadResponse{Data: []byte("x")}); err != nil {
		return err
	}
	<-stream.Context().Done()
	return stream.Context().Err()
}

// TestReadToGivesUpOnAStalledServer: a read that receives nothing for
// readIdle ends with DEADLINE_EXCEEDED saying so, where it waited for
// ever; and a stdout claiming more than maxStreamBytes is refused before
// anything is read or staged on disk.
func TestReadToGivesUpOnAStalledServer(t *testing.T) {
	defer func(d time.Duration) { readIdle = d }(readIdle)
	readIdle = 200 * time.Millisecond
	conn := grpctest.Serve(t, func(g *grpc.Server) { bytestream.RegisterByteStreamServer(g, &stallingByteStream{}) })
	c := New(conn, Options{})
	// Large enough to be read by ByteStream, not in a batch.
	d := digest.FromBytes(repb.DigestFunction_SHA256, make([]byte, 8<<20))
	err := c.ReadTo(t.Context(), d, &bytes.Buffer{})
	if status.Code(err) != codes.DeadlineExceeded || !strings.Contains(err.Error(), "sent nothing") {
		t.Fatalf("ReadTo from a server that stalls: %v, want DEADLINE_EXCEEDED saying it sent nothing", err)
	}

	huge := &repb.Digest{Hash: d.Hash(), SizeBytes: 100 << 30}
	err = c.WriteStream(t.Context(), &bytes.Buffer{}, "stdout", nil, huge)
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "stdout is 107374182400 bytes") {
		t.Fatalf("a 100 GiB stdout: %v, want RESOURCE_EXHAUSTED naming its size", err)
	}
}
