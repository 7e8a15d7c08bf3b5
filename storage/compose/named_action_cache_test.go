package compose_test

import (
	"context"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage/compose"
)

// TestNamedActionCacheHidesTheAddress: a remote action cache that cannot
// be reached is UNAVAILABLE naming its place in the backend tree, not its
// address (a client read the dial error with the backend's host and
// port); a miss stays NOT_FOUND.
func TestNamedActionCacheHidesTheAddress(t *testing.T) {
	n := startNode(t)
	ac := compose.NamedActionCache{AC: n.ac(), Name: "backend.cached.backend"}
	d := digest.FromBytes(repb.DigestFunction_SHA256, []byte("an action"))
	if _, err := ac.Get(context.Background(), "", d); status.Code(err) != codes.NotFound {
		t.Fatalf("a miss: %v, want NOT_FOUND", err)
	}
	n.stop()
	for name, err := range map[string]error{
		"Get": func() error { _, err := ac.Get(context.Background(), "", d); return err }(),
		"Put": ac.Put(context.Background(), "", d, &repb.ActionResult{}),
	} {
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), `"backend.cached.backend"`) || strings.Contains(err.Error(), "127.0.0.1") {
			t.Errorf("%s with the backend down: %v; want UNAVAILABLE naming backend.cached.backend, not its address", name, err)
		}
	}
}
