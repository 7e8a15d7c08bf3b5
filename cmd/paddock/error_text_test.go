package main

import (
	"net"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/grpctest"
)

// TestFrontErrorsReadClean: a scheduler whose --storage is itself (a
// forwarding loop) refuses FindMissingBlobs once the call has passed 8
// servers; the client reads the refusal with each server's words, without
// Go's "rpc error: code = ... desc =" text of each inner status
// (internal/grpcerr), which repeated it 8 times.
func TestFrontErrorsReadClean(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // the scheduler listens there next
	start(t, "scheduler", "--listen", addr, "--storage", addr)
	d := digest.FromBytes(repb.DigestFunction_SHA256, []byte("never uploaded"))
	_, err = repb.NewContentAddressableStorageClient(grpctest.Dial(t, addr)).FindMissingBlobs(t.Context(),
		&repb.FindMissingBlobsRequest{BlobDigests: []*repb.Digest{d.Proto()}})
	st := status.Convert(err)
	if st.Code() != codes.FailedPrecondition || strings.Contains(st.Message(), "rpc error") || !strings.Contains(st.Message(), "forwarding loop") {
		t.Fatalf("FindMissingBlobs through a loop: %v %q; want FAILED_PRECONDITION naming the loop, without Go's error text", st.Code(), st.Message())
	}
}
