package storage

import (
	"context"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/digest"
)

// ActionCache maps (instance name, action digest) to an ActionResult.
// Implementations: DiskActionCache, MemoryActionCache and
// RemoteActionCache. Get of an absent entry is NOT_FOUND. Completeness (are
// the blobs the result names still in the CAS?) is not checked here but by
// CheckComplete, so that each cache stays a plain map.
type ActionCache interface {
	Get(ctx context.Context, instance string, action digest.Digest) (*repb.ActionResult, error)
	Put(ctx context.Context, instance string, action digest.Digest, result *repb.ActionResult) error
}
