package compose

import (
	"context"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// NamedActionCache is an action cache whose failures name it by its
// place in the backend tree (backendError), never by its address: a
// remote action cache that could not be reached answered clients with
// the dial error, "dial tcp 127.0.0.1:…: connection refused", where the
// same tree's CAS said `storage backend "backend.cached.backend" is
// unavailable` (outside probe). A miss stays NOT_FOUND as it was.
type NamedActionCache struct {
	AC   storage.ActionCache
	Name string
}

// Get implements storage.ActionCache.
func (n NamedActionCache) Get(ctx context.Context, instance string, action digest.Digest) (*repb.ActionResult, error) {
	r, err := n.AC.Get(ctx, instance, action)
	if err == nil || status.Code(err) == codes.NotFound {
		return r, err
	}
	return nil, backendError(n.Name, err)
}

// Put implements storage.ActionCache.
func (n NamedActionCache) Put(ctx context.Context, instance string, action digest.Digest, result *repb.ActionResult) error {
	return backendError(n.Name, n.AC.Put(ctx, instance, action, result))
}
