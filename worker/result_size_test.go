package worker_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestOversizedResultIsRefused: 1,100 output symlinks with 4,000-byte
// targets make an ActionResult of about 4.4 MB, past what the worker
// protocol and gRPC clients carry: the action fails with
// RESOURCE_EXHAUSTED saying so, and nothing is cached. Before, the
// scheduler's server refused the worker's message, the action ran four
// times, and its result was cached all the same.
func TestOversizedResultIsRefused(t *testing.T) {
	h := newHarness(t)
	var outputs []string
	for i := range 1100 {
		outputs = append(outputs, fmt.Sprintf("l%05d", i))
	}
	target := strings.Repeat("x/", 2000)
	a := h.action(sh(`for i in $(seq -f '%05g' 0 1099); do ln -s `+target+` l$i; done`, outputs...), &repb.Directory{}, false)
	resp := h.w.Execute(context.Background(), a)
	if st := status.FromProto(resp.Status); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "not cached") {
		t.Fatalf("status %v, want RESOURCE_EXHAUSTED saying the result was not cached", st)
	}
	if _, err := h.ac.Get(context.Background(), "main", actionDigest(a)); status.Code(err) != codes.NotFound {
		t.Fatalf("the result was cached: %v", err)
	}
}
