package client

import (
	"context"
	"fmt"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// CachedResult looks the action d up in the action cache, as recc and
// Bazel do before they execute: a hit costs no upload and no execution,
// and needs only the ac-read and cas-read permissions. stdout and stderr
// come inlined when the server inlines them. A result some of whose blobs
// are no longer in the CAS is an error too (NOT_FOUND), so that the caller
// executes the action rather than fail to fetch an output halfway through
// writing it.
func (c *Client) CachedResult(ctx context.Context, d digest.Digest) (*repb.ActionResult, error) {
	ctx = c.Context(ctx)
	r, err := c.ac.GetActionResult(ctx, &repb.GetActionResultRequest{
		InstanceName: c.opts.Instance, ActionDigest: d.Proto(),
		InlineStdout: true, InlineStderr: true, DigestFunction: d.Function(),
	})
	if err != nil {
		return nil, fmt.Errorf("look up %s in the action cache: %w", d, err)
	}
	if err := storage.CheckComplete(ctx, c.store, d.Function(), r); err != nil {
		return nil, fmt.Errorf("cached result of %s: %w", d, err)
	}
	return r, nil
}
