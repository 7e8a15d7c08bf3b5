package scheduler

import (
	"context"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/digest"
)

// TestWaitExecutionOfAResultWhoseOutputsAreGone: WaitExecution of an
// operation that finished with outputs the CAS has since evicted is
// NOT_FOUND, as for an operation forgotten, so the client executes the
// action again; with its outputs there it gets the result. Handed the
// result, Bazel (which calls WaitExecution after a broken stream) failed
// the build on the outputs it could not fetch (outside probe).
func TestWaitExecutionOfAResultWhoseOutputsAreGone(t *testing.T) {
	f := startFarm(t, testConfig(), "", nil, nil)
	ctx := ctxTimeout(t)
	out := digest.FromBytes(repb.DigestFunction_SHA256, []byte("an output"))
	if err := f.cas.Put(ctx, out, strings.NewReader("an output")); err != nil {
		t.Fatal(err)
	}
	startTestWorker(t, f.addr, "w1", 1, func(ctx context.Context, a *workerpb.Assignment) *repb.ExecuteResponse {
		return &repb.ExecuteResponse{Result: &repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "out/a", Digest: out.Proto()}}}}
	})
	stream, err := f.exec.Execute(ctx, executeRequest(f.action(t, "outputs", nil)))
	if err != nil {
		t.Fatal(err)
	}
	ops, err := collect(stream)
	if err != nil || len(ops) == 0 || !ops[len(ops)-1].Done {
		t.Fatalf("Execute: %d messages, %v", len(ops), err)
	}
	name := ops[0].Name
	wait := func() ([]*repb.ExecuteResponse, error) {
		ops, err := collect(must(f.exec.WaitExecution(ctx, &repb.WaitExecutionRequest{Name: name})))
		var resps []*repb.ExecuteResponse
		for _, op := range ops {
			if op.Done {
				resps = append(resps, responseOf(t, op))
			}
		}
		return resps, err
	}
	if resps, err := wait(); err != nil || len(resps) != 1 || len(resps[0].GetResult().GetOutputFiles()) != 1 {
		t.Fatalf("WaitExecution with the outputs there: %v, %v; want the result", resps, err)
	}
	f.cas.Delete(out)
	_, err = wait()
	if st := status.Convert(err); st.Code() != codes.NotFound {
		t.Fatalf("WaitExecution once the output was evicted: %v; want NOT_FOUND", err)
	}
}
