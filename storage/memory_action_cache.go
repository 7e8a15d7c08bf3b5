package storage

import (
	"context"
	"sync"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/digest"
)

// MemoryActionCache keeps action results in a map. It exists for tests and
// is safe for concurrent use; results are copied in and out.
type MemoryActionCache struct {
	mu      sync.RWMutex
	results map[acKey]*repb.ActionResult
}

type acKey struct {
	instance string
	action   digest.Digest
}

// NewMemoryActionCache returns an empty cache.
func NewMemoryActionCache() *MemoryActionCache {
	return &MemoryActionCache{results: map[acKey]*repb.ActionResult{}}
}

// Get implements ActionCache.
func (c *MemoryActionCache) Get(ctx context.Context, instance string, action digest.Digest) (*repb.ActionResult, error) {
	c.mu.RLock()
	r, ok := c.results[acKey{instance, action}]
	c.mu.RUnlock()
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no action result for %s in instance %q", action, instance)
	}
	return proto.Clone(r).(*repb.ActionResult), nil
}

// Put implements ActionCache.
func (c *MemoryActionCache) Put(ctx context.Context, instance string, action digest.Digest, result *repb.ActionResult) error {
	c.mu.Lock()
	c.results[acKey{instance, action}] = proto.Clone(result).(*repb.ActionResult)
	c.mu.Unlock()
	return nil
}
