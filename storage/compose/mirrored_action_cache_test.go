package compose_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/storage/compose"
)

// t0 is when the first result of a test's action completed.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// dateAction is the key of a nondeterministic action (date +%s%N > out).
var dateAction = digest.FromBytes(repb.DigestFunction_SHA256, []byte("date +%s%N > out"))

// outResult is a result of dateAction whose file out holds content, with
// metadata md.
func outResult(content string, md *repb.ExecutedActionMetadata) *repb.ActionResult {
	return &repb.ActionResult{
		OutputFiles:       []*repb.OutputFile{{Path: "out", Digest: digest.FromBytes(repb.DigestFunction_SHA256, []byte(content)).Proto()}},
		ExecutionMetadata: md,
	}
}

// workerMetadata is the metadata a Paddock worker sets, every stage done
// by at.
func workerMetadata(at time.Time) *repb.ExecutedActionMetadata {
	ts := timestamppb.New(at)
	return &repb.ExecutedActionMetadata{Worker: "w1", ExecutionCompletedTimestamp: ts, OutputUploadCompletedTimestamp: ts, WorkerCompletedTimestamp: ts}
}

// holds reports whether c's entry for dateAction is want.
func holds(ctx context.Context, c storage.ActionCache, want *repb.ActionResult) error {
	r, err := c.Get(ctx, "", dateAction)
	if err == nil && !proto.Equal(r, want) {
		err = fmt.Errorf("holds %v, want %v", r, want)
	}
	return err
}

// mirroredACHolding is a mirrored pair of nodes (mirroredPair) whose
// action cache holds r for dateAction, put through the mirror with both
// sides up: where the tests that take one side out start from.
func mirroredACHolding(t *testing.T, r *repb.ActionResult) (*compose.MirroredActionCache, [2]*node) {
	t.Helper()
	_, ac, nodes := mirroredPair(t)
	if err := ac.Put(context.Background(), "", dateAction, r); err != nil {
		t.Fatalf("Put through the mirror with both sides up: %v", err)
	}
	return ac, nodes
}

// The finding this guards against: a result rewritten (Execute with
// skip_cache_lookup) while one side is down reached the other side only;
// once the side was back, a lookup through the mirror served the first
// side's old entry, the sides disagreed for good, and which answer a
// client got depended on which side was up. Now the newer entry is served
// and the side that missed the rewrite is overwritten with it.
func TestMirroredActionCacheRewriteWhileSideDown(t *testing.T) {
	ctx := context.Background()
	r1, r2 := outResult("R1", workerMetadata(t0)), outResult("R2", workerMetadata(t0.Add(time.Minute)))
	for _, stopped := range []int{0, 1} {
		t.Run(fmt.Sprintf("side%d", stopped), func(t *testing.T) {
			ac, nodes := mirroredACHolding(t, r1)
			nodes[stopped].stop()
			if err := ac.Put(ctx, "", dateAction, r2); err != nil {
				t.Fatalf("rewrite with side %d down: %v", stopped, err)
			}
			nodes[stopped].start()
			back, other := nodes[stopped].ac(), nodes[1-stopped].ac()
			eventually(t, "the side back up answers", func() error {
				r, err := back.Get(ctx, "", dateAction)
				if err == nil && !proto.Equal(r, r1) {
					t.Fatalf("the side back up holds %v before any lookup, want R1", r)
				}
				return err
			})
			if err := holds(ctx, other, r2); err != nil {
				t.Fatalf("the side that stayed up: %v", err)
			}
			if err := holds(ctx, ac, r2); err != nil {
				t.Fatalf("lookup through the mirror with both sides up: %v", err)
			}
			eventually(t, "the side that missed the rewrite repaired", func() error { return holds(ctx, back, r2) })
			nodes[1-stopped].stop()
			if err := holds(ctx, ac, r2); err != nil {
				t.Fatalf("lookup through the mirror with only the repaired side up: %v", err)
			}
		})
	}
}

// Which entry stands when the sides differ (or one lacks it): the one
// completed later, by upload, else worker, else command completion time;
// when that cannot be told, side a's. Either way the other side is then
// overwritten with it, so the sides agree.
func TestMirroredActionCacheDifferingSides(t *testing.T) {
	ctx := context.Background()
	later := t0.Add(time.Second)
	a0, b0 := outResult("A", nil), outResult("B", nil)
	workerOnly := func(t time.Time) *repb.ExecutedActionMetadata {
		return &repb.ExecutedActionMetadata{WorkerCompletedTimestamp: timestamppb.New(t), ExecutionCompletedTimestamp: timestamppb.New(t)}
	}
	commandOnly := func(t time.Time) *repb.ExecutedActionMetadata {
		return &repb.ExecutedActionMetadata{ExecutionCompletedTimestamp: timestamppb.New(t)}
	}
	for _, tc := range []struct {
		name  string
		a, b  *repb.ActionResult // nil: no entry
		wantB bool               // else side a's stands
	}{
		{"no metadata on either: side a's", a0, b0, false},
		{"equal times: side a's", outResult("A", workerMetadata(t0)), outResult("B", workerMetadata(t0)), false},
		{"only b has times: side a's", a0, outResult("B", workerMetadata(later)), false},
		{"only a has times: side a's", outResult("A", workerMetadata(t0)), b0, false},
		{"a uploaded later", outResult("A", workerMetadata(later)), outResult("B", workerMetadata(t0)), false},
		{"b uploaded later", outResult("A", workerMetadata(t0)), outResult("B", workerMetadata(later)), true},
		{"b's worker completed later (an upload by a client)", outResult("A", workerMetadata(t0)), outResult("B", workerOnly(later)), true},
		{"b's command completed later", outResult("A", commandOnly(t0)), outResult("B", commandOnly(later)), true},
		{"on a only", a0, nil, false},
		{"on b only", nil, b0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sides := [2]storage.ActionCache{newDiskAC(t), newDiskAC(t)}
			for i, r := range []*repb.ActionResult{tc.a, tc.b} {
				if r == nil {
					continue
				}
				if err := sides[i].Put(ctx, "", dateAction, r); err != nil {
					t.Fatal(err)
				}
			}
			ac := compose.NewMirroredActionCache(compose.ACMirror{Name: "a", Cache: sides[0]}, compose.ACMirror{Name: "b", Cache: sides[1]}, newRepairer(t), nil)
			want := tc.a
			if tc.wantB {
				want = tc.b
			}
			if err := holds(ctx, ac, want); err != nil {
				t.Fatalf("lookup through the mirror: %v", err)
			}
			eventually(t, "both sides agree", func() error {
				for i, c := range sides {
					if err := holds(ctx, c, want); err != nil {
						return fmt.Errorf("side %d: %w", i, err)
					}
				}
				return nil
			})
		})
	}
}

// hungLookups is an action cache whose lookups hang until h is resumed.
type hungLookups struct {
	storage.ActionCache
	h *hung
}

func (c hungLookups) Get(ctx context.Context, instance string, action digest.Digest) (*repb.ActionResult, error) {
	if err := c.h.wait(ctx); err != nil {
		return nil, err
	}
	return c.ActionCache.Get(ctx, instance, action)
}

// With one side down, or hung past the mirror's wait, a lookup is served
// by the other side: its entry, or NOT_FOUND if it has none. A lookup
// asks both sides at once, so a hung first side no longer holds it until
// the client's deadline.
func TestMirroredActionCacheOneSideOut(t *testing.T) {
	ctx := context.Background()
	r1 := outResult("R1", workerMetadata(t0))
	absent := digest.FromBytes(repb.DigestFunction_SHA256, []byte("never run"))
	check := func(t *testing.T, ac *compose.MirroredActionCache) {
		t.Helper()
		if err := answers(t, "lookup", func() error { return holds(ctx, ac, r1) }); err != nil {
			t.Fatalf("lookup with one side out: %v", err)
		}
		err := answers(t, "lookup of an absent entry", func() error {
			_, err := ac.Get(ctx, "", absent)
			return err
		})
		if status.Code(err) != codes.NotFound {
			t.Fatalf("lookup of an absent entry with one side out: %v, want NOT_FOUND", err)
		}
	}
	for _, out := range []int{0, 1} {
		t.Run(fmt.Sprintf("side%d/down", out), func(t *testing.T) {
			ac, nodes := mirroredACHolding(t, r1)
			nodes[out].stop()
			check(t, ac)
		})
		t.Run(fmt.Sprintf("side%d/hung", out), func(t *testing.T) {
			caches := [2]storage.ActionCache{newDiskAC(t), newDiskAC(t)}
			for _, c := range caches {
				if err := c.Put(ctx, "", dateAction, r1); err != nil {
					t.Fatal(err)
				}
			}
			sides := [2]compose.ACMirror{{Name: "a", Cache: caches[0]}, {Name: "b", Cache: caches[1]}}
			sides[out].Cache = hungLookups{caches[out], newHung(t)}
			ac := compose.NewMirroredActionCache(sides[0], sides[1], newRepairer(t), nil)
			compose.SetSecondSideWait(nil, ac, 100*time.Millisecond)
			check(t, ac)
		})
	}
}
