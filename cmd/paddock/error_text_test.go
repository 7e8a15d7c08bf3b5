package main

import (
	"net"
	"os/exec"
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

// TestRoleErrorSaysItsRoleOnce: a config the scheduler refuses is reported
// as the other roles' are, "paddock scheduler: config: ...". Before, the
// scheduler package's "scheduler:" followed main's "paddock scheduler:"
// ("paddock scheduler: scheduler: max_retries must not be negative").
func TestRoleErrorSaysItsRoleOnce(t *testing.T) {
	f := writeConfig(t, "scheduler.yaml", "version: 1\nmax_retries: -1\n")
	for _, args := range [][]string{{"--print-config"}, {"--storage", "127.0.0.1:1", "--listen", "127.0.0.1:0", "--http-listen", ""}} {
		out, err := exec.Command(binary, append([]string{"scheduler", "--config", f}, args...)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "paddock scheduler: config: ") || strings.Contains(string(out), "scheduler: scheduler:") {
			t.Errorf("scheduler %v with max_retries -1: %v\n%s\nwant \"paddock scheduler: config: ...\", the role named once", args, err, out)
		}
	}
}
