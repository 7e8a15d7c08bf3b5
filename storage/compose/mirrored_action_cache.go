package compose

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// ACMirror is one side of a MirroredActionCache.
type ACMirror struct {
	Name  string
	Cache storage.ActionCache
}

// MirroredActionCache keeps every entry on two action caches, with the
// write rules of MirroredBlobStore: a Put succeeds when both sides stored
// it or one did and the other is UNAVAILABLE or has not answered within
// secondSideWait of it.
//
// Unlike a blob, an entry can be rewritten with different content (a
// nondeterministic action run again with skip_cache_lookup, a client
// uploading a new result), so a Put made while one side was down leaves
// the sides disagreeing, and asking one side first would serve whichever
// answer that side holds, for good. So a Get asks both sides at once (two
// reads per lookup instead of one; a hung side costs a lookup
// secondSideWait, as it costs a write). When both hold an entry and the
// entries differ, the one that completed later wins (newerResult); the
// other side is overwritten with it in the background, so the sides
// converge. An entry found on one side only is copied to the other. When
// one side is down or too slow, the other's answer stands, as before.
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

// Get implements storage.ActionCache; see the type's comment for which
// side's entry it returns.
func (c *MirroredActionCache) Get(ctx context.Context, instance string, action digest.Digest) (*repb.ActionResult, error) {
	got, errs := c.getBoth(ctx, instance, action)
	if errs[0] != nil && !isUnavailable(errs[0]) && !isNotFound(errs[0]) {
		return nil, backendError(c.sides[0].Name, errs[0])
	}
	switch {
	case errs[0] == nil && errs[1] == nil:
		if proto.Equal(got[0], got[1]) {
			return got[0], nil
		}
		w := newerResult(got[0], got[1])
		c.startRepair(instance, action, got[w], 1-w)
		return got[w], nil
	case errs[0] == nil || errs[1] == nil:
		found := 0
		if errs[0] != nil {
			found = 1
		}
		if other := 1 - found; isNotFound(errs[other]) {
			c.startRepair(instance, action, got[found], other)
		} else {
			c.down.warn(other, "mirror side failed; using the other", "action result "+action.String(), errs[other])
		}
		return got[found], nil
	case isNotFound(errs[0]) && isNotFound(errs[1]):
		return nil, status.Errorf(codes.NotFound, "no cached result for action %s", action)
	}
	return nil, bothFailed(c.names(), errs)
}

// getBoth asks both sides for the entry at once. A NOT_FOUND is an answer
// like a hit: it starts the other side's wait, so a hung side costs a miss
// secondSideWait too, not the client's deadline.
func (c *MirroredActionCache) getBoth(ctx context.Context, instance string, action digest.Digest) ([2]*repb.ActionResult, [2]error) {
	var got [2]*repb.ActionResult
	var notFound [2]error
	errs := bothWithin(ctx, c.wait, func(ctx context.Context, i int) error {
		r, err := c.sides[i].Cache.Get(ctx, instance, action)
		if isNotFound(err) {
			notFound[i] = err
			return nil
		}
		got[i] = r
		return err
	})
	for i, err := range notFound {
		if err != nil {
			errs[i] = err
		}
	}
	return got, errs
}

// startRepair writes r to side dst in the background: dst lacks the entry
// or holds one that lost to r.
func (c *MirroredActionCache) startRepair(instance string, action digest.Digest, r *repb.ActionResult, dst int) {
	copied := proto.Clone(r).(*repb.ActionResult)
	side := c.sides[dst]
	c.repair.Start(fmt.Sprintf("ac %q %s >%s", instance, action, side.Name), func(ctx context.Context) error {
		return backendError(side.Name, side.Cache.Put(ctx, instance, action, copied))
	})
}

// Put implements storage.ActionCache.
func (c *MirroredActionCache) Put(ctx context.Context, instance string, action digest.Digest, result *repb.ActionResult) error {
	errs := bothWithin(ctx, c.wait, func(ctx context.Context, i int) error {
		return c.sides[i].Cache.Put(ctx, instance, action, result)
	})
	return mirrorWriteResult("action result "+action.String(), errs, c.down)
}

// newerResult returns which of two differing entries for one action
// should stand: 1 if b completed later than a, else 0. An entry completed
// when its outputs were uploaded, else when its worker finished, else
// when its command did: the last of these its ExecutedActionMetadata
// records (Paddock's workers set all three; recent Bazel versions set the
// last two on the results they upload). When either time is missing or
// they are equal, neither can be told newer and side a's entry stands
// (the one served when side a was asked first): the sides converge on it.
//
// The times come from the clocks of the workers or clients that wrote
// the entries, so entries written within those clocks' skew of each other
// may be ordered wrongly; they only need ordering after a write missed a
// side that was down, which is rarely that close to the write before it.
func newerResult(a, b *repb.ActionResult) int {
	ta, tb := completedAt(a), completedAt(b)
	if !ta.IsZero() && !tb.IsZero() && tb.After(ta) {
		return 1
	}
	return 0
}

// completedAt is when r's execution completed (see newerResult), or the
// zero time if its metadata does not say.
func completedAt(r *repb.ActionResult) time.Time {
	md := r.GetExecutionMetadata()
	for _, ts := range []*timestamppb.Timestamp{
		md.GetOutputUploadCompletedTimestamp(), md.GetWorkerCompletedTimestamp(), md.GetExecutionCompletedTimestamp(),
	} {
		if ts.IsValid() && (ts.GetSeconds() != 0 || ts.GetNanos() != 0) {
			return ts.AsTime()
		}
	}
	return time.Time{}
}

// isNotFound reports whether err is a side's answer that it has no entry.
func isNotFound(err error) bool { return status.Code(err) == codes.NotFound }

var _ storage.ActionCache = (*MirroredActionCache)(nil)
