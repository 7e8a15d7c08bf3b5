package worker

import (
	"context"
	"log/slog"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// TestCacheStepWritesOnlyWhatIsStillAssigned: a result is written to the
// action cache while the scheduler assigns the action to this worker, and
// not once it no longer does (it may have given the action to another
// worker, whose result the client has); the result is returned either way.
func TestCacheStepWritesOnlyWhatIsStillAssigned(t *testing.T) {
	for _, assigned := range []bool{true, false} {
		ac := storage.NewMemoryActionCache()
		action := digest.FromBytes(repb.DigestFunction_SHA256, []byte("action"))
		want := &repb.ActionResult{StdoutRaw: []byte("out")}
		step := &cacheStep{
			next: ExecutorFunc(func(context.Context, *Job) (*repb.ExecuteResponse, error) {
				return &repb.ExecuteResponse{Result: want}, nil
			}),
			ac: ac, logger: slog.New(slog.DiscardHandler),
			stillAssigned: func(context.Context) bool { return assigned },
		}
		j := &Job{Assignment: &workerpb.Assignment{InstanceName: "main"}, Metadata: &repb.ExecutedActionMetadata{},
			ActionDigest: action, Action: &repb.Action{}}
		resp, err := step.Execute(context.Background(), j)
		if err != nil || resp.Result != want {
			t.Fatalf("still assigned %v: %v, %v; want the result", assigned, resp, err)
		}
		_, err = ac.Get(context.Background(), "main", action)
		if cached := err == nil; cached != assigned {
			t.Fatalf("still assigned %v: cached %v (%v)", assigned, cached, err)
		}
		if !assigned && status.Code(err) != codes.NotFound {
			t.Fatalf("lookup: %v", err)
		}
	}
}
