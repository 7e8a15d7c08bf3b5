package compose

import (
	"context"
	"log/slog"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// ACMirror is one side of a MirroredActionCache.
type ACMirror struct {
	Name  string
	Cache storage.ActionCache
}

// MirroredActionCache keeps every entry on two action caches, with the
// rules of MirroredBlobStore: a Put succeeds when both sides stored it or
// one did and the other is UNAVAILABLE or has not answered within
// secondSideWait of it; a Get asks the first side, then
// the second, and copies an entry found only on the second back to the
// first in the background.
type MirroredActionCache struct {
	sides  [2]ACMirror
	repair *Repairer
	down   *downLog
	wait   time.Duration // secondSideWait; shorter in tests
}

// NewMirroredActionCache returns the pair a, b; repairs run on rep.
func NewMirroredActionCache(a, b ACMirror, rep *Repairer, logger *slog.Logger) *MirroredActionCache {
	return &MirroredActionCache{sides: [2]ACMirror{a, b}, repair: rep, down: newDownLog(logger, a.Name, b.Name), wait: secondSideWait}
}

func (c *MirroredActionCache) names() [2]string { return [2]string{c.sides[0].Name, c.sides[1].Name} }

// Get implements storage.ActionCache.
func (c *MirroredActionCache) Get(ctx context.Context, instance string, action digest.Digest) (*repb.ActionResult, error) {
	r, errA := c.sides[0].Cache.Get(ctx, instance, action)
	if errA == nil {
		return r, nil
	}
	if !isUnavailable(errA) && status.Code(errA) != codes.NotFound {
		return nil, backendError(c.sides[0].Name, errA)
	}
	r, errB := c.sides[1].Cache.Get(ctx, instance, action)
	if errB != nil {
		if status.Code(errA) == codes.NotFound && status.Code(errB) == codes.NotFound {
			return nil, status.Errorf(codes.NotFound, "no cached result for action %s", action)
		}
		return nil, bothFailed(c.names(), [2]error{errA, errB})
	}
	if status.Code(errA) == codes.NotFound {
		copied := proto.Clone(r).(*repb.ActionResult)
		dst := c.sides[0]
		c.repair.Start("ac "+instance+" "+action.String()+" >"+dst.Name, func(ctx context.Context) error {
			return backendError(dst.Name, dst.Cache.Put(ctx, instance, action, copied))
		})
	}
	return r, nil
}

// Put implements storage.ActionCache.
func (c *MirroredActionCache) Put(ctx context.Context, instance string, action digest.Digest, result *repb.ActionResult) error {
	errs := bothWithin(ctx, c.wait, func(ctx context.Context, i int) error {
		return c.sides[i].Cache.Put(ctx, instance, action, result)
	})
	return mirrorWriteResult("action result "+action.String(), errs, c.down)
}

var _ storage.ActionCache = (*MirroredActionCache)(nil)
