package storage_test

import (
	"context"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"

	"github.com/paddock-build/paddock/storage"
)

// TestCacheChecksReadWithinTheMemoryBudget: checking a cached result reads
// each output directory's Tree whole, within the process's budget for such
// reads (storage.RequestMemoryBytes). While the budget is taken, a lookup
// of a result with an output directory waits (here until its deadline), a
// result without one is answered at once, and once the budget is given
// back the first is answered too.
func TestCacheChecksReadWithinTheMemoryBudget(t *testing.T) {
	ts := startServer(t, storage.ServerOptions{})
	ctx := context.Background()
	tree := putProto(t, ts.disk, &repb.Tree{Root: &repb.Directory{}})
	withDir := putString(t, ts.disk, "an action with an output directory")
	plain := putString(t, ts.disk, "an action with an output file")
	out := putString(t, ts.disk, "its output")
	for d, r := range map[*repb.Digest]*repb.ActionResult{
		withDir.Proto(): {OutputDirectories: []*repb.OutputDirectory{{Path: "d", TreeDigest: tree.Proto()}}},
		plain.Proto():   {OutputFiles: []*repb.OutputFile{{Path: "f", Digest: out.Proto()}}},
	} {
		if _, err := ts.acc.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: d, ActionResult: r}); err != nil {
			t.Fatal(err)
		}
	}
	release, err := storage.HoldMemory(ctx, storage.RequestMemoryBytes)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_, err = ts.acc.GetActionResult(short, &repb.GetActionResultRequest{ActionDigest: withDir.Proto()})
	wantStatus(t, err, codes.DeadlineExceeded)
	if _, err := ts.acc.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: plain.Proto()}); err != nil {
		t.Errorf("a result without output directories, while the budget is taken: %v", err)
	}
	release()
	if _, err := ts.acc.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: withDir.Proto()}); err != nil {
		t.Fatalf("once the budget is free: %v", err)
	}
}
