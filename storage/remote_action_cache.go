package storage

import (
	"context"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"

	"github.com/paddock-build/paddock/digest"
)

// RemoteActionCache is an ActionCache over another REv2 endpoint's
// ActionCache service. The caller's instance name is passed through, so the
// remote keeps the partitioning. The remote checks completeness itself.
type RemoteActionCache struct {
	ac repb.ActionCacheClient
}

// NewRemoteActionCache returns an ActionCache that talks to conn.
func NewRemoteActionCache(conn grpc.ClientConnInterface) *RemoteActionCache {
	return &RemoteActionCache{ac: repb.NewActionCacheClient(conn)}
}

// Get implements ActionCache.
func (c *RemoteActionCache) Get(ctx context.Context, instance string, action digest.Digest) (*repb.ActionResult, error) {
	return c.ac.GetActionResult(ctx, &repb.GetActionResultRequest{
		InstanceName: instance, ActionDigest: action.Proto(), DigestFunction: action.Function(),
	})
}

// Put implements ActionCache.
func (c *RemoteActionCache) Put(ctx context.Context, instance string, action digest.Digest, result *repb.ActionResult) error {
	_, err := c.ac.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{
		InstanceName: instance, ActionDigest: action.Proto(), ActionResult: result, DigestFunction: action.Function(),
	})
	return err
}

var _ ActionCache = (*RemoteActionCache)(nil)
