package worker_test

import (
	"context"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestOutputsEvictedWhileUploadedFailTheAction: outputs that together do
// not fit in the CAS evict each other while they are uploaded. The
// execution now fails with RESOURCE_EXHAUSTED saying so, and nothing is
// cached. Before, the client got an OK result naming blobs that were
// already gone (Bazel: "Missing digest"), on every rebuild.
func TestOutputsEvictedWhileUploadedFailTheAction(t *testing.T) {
	h := newHarnessCAS(t, 4<<20)
	a := h.action(sh("for f in a b c d; do head -c 1400000 /dev/urandom > $f; done", "a", "b", "c", "d"), &repb.Directory{}, false)
	resp := h.w.Execute(context.Background(), a)
	st := status.FromProto(resp.Status)
	if st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "evicted") {
		t.Fatalf("status %v, want RESOURCE_EXHAUSTED saying the outputs were evicted", st)
	}
	if n := len(resp.Result.GetOutputFiles()); n != 0 {
		t.Fatalf("the failed result still names %d output files", n)
	}
	if _, err := h.ac.Get(context.Background(), "main", actionDigest(a)); status.Code(err) != codes.NotFound {
		t.Fatalf("the result was cached: %v", err)
	}
	// Outputs that fit are reported as before.
	fits := h.action(sh("head -c 1400000 /dev/urandom > a; head -c 1400000 /dev/urandom > b", "a", "b"), &repb.Directory{}, false)
	if res := ok(t, h.w.Execute(context.Background(), fits)); len(res.OutputFiles) != 2 {
		t.Fatalf("%d outputs reported, want 2", len(res.OutputFiles))
	}
}

// TestOutputsEvictedFromASmallCASFailTheAction: outputs under the 1 MiB
// from which results are checked, but more than a CAS of 600 KiB holds,
// are checked too when the worker knows the CAS's size: the client was
// handed an OK result naming an output already evicted.
func TestOutputsEvictedFromASmallCASFailTheAction(t *testing.T) {
	h := newHarnessCAS(t, 600<<10)
	a := h.action(sh("for f in a b c d e; do head -c 150000 /dev/urandom > $f; done", "a", "b", "c", "d", "e"), &repb.Directory{}, false)
	st := status.FromProto(h.w.Execute(context.Background(), a).Status)
	if st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "evicted") {
		t.Fatalf("750 KB of outputs in a CAS of 600 KiB: %v, want RESOURCE_EXHAUSTED saying they were evicted", st)
	}
}
