package e2e

import (
	"testing"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/internal/grpctest"
)

// TestTimeoutAndCancel: an action past its timeout, and an action whose
// client cancels it, are killed in their sandbox through the whole stack;
// the timed-out one keeps the output it wrote, and neither is cached.
func TestTimeoutAndCancel(t *testing.T) {
	f, c := startUpClient(t, "--runner-config", hostNetworkConfig(t)) // the gate is on the host's loopback
	ac := repb.NewActionCacheClient(grpctest.Dial(t, f.addr))
	ctx := t.Context()

	t.Run("Timeout", func(t *testing.T) {
		c := c.withT(t)
		d := c.prepare(ctx, action{cmd: shell("echo partial; echo err >&2; exec sleep 600"), timeout: time.Second})
		resp, err := c.execute(ctx, d, true)
		if err != nil {
			t.Fatal(err)
		}
		if st := status.FromProto(resp.Status); st.Code() != codes.DeadlineExceeded {
			t.Errorf("status %v, want DEADLINE_EXCEEDED", st)
		}
		stdout, stderr := c.read(ctx, resp.GetResult().GetStdoutDigest()), c.read(ctx, resp.GetResult().GetStderrDigest())
		if string(stdout) != "partial\n" || string(stderr) != "err\n" {
			t.Errorf("a timed-out action's stdout %q and stderr %q, want what it wrote before: \"partial\\n\", \"err\\n\"", stdout, stderr)
		}
		if r, err := ac.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: d}); status.Code(err) != codes.NotFound {
			t.Errorf("the action cache has %v (%v) for the timed-out action, want NOT_FOUND", r, err)
		}
	})

	t.Run("Cancel", func(t *testing.T) {
		c := c.withT(t)
		g := newGate(t)
		d := c.prepare(ctx, g.action())
		stream, err := c.exec.Execute(ctx, &repb.ExecuteRequest{ActionDigest: d, SkipCacheLookup: true})
		if err != nil {
			t.Fatal(err)
		}
		op, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		conn := g.attempt(faultLimit)
		ops := longrunningpb.NewOperationsClient(grpctest.Dial(t, f.addr))
		if _, err := ops.CancelOperation(ctx, &longrunningpb.CancelOperationRequest{Name: op.Name}); err != nil {
			t.Fatalf("CancelOperation %s: %v", op.Name, err)
		}
		// The sandbox is torn down: the action's connection closes.
		checkKilled(t, conn, faultLimit)
		// The client's stream ends as cancelled.
		for !op.Done {
			if op, err = stream.Recv(); err != nil {
				break
			}
		}
		code := status.Code(err)
		if err == nil {
			if resp, rerr := operationResponse(op); rerr != nil {
				code = status.Code(rerr)
			} else {
				code = status.FromProto(resp.Status).Code()
			}
		}
		if code != codes.Canceled {
			t.Errorf("the cancelled operation ended with %v (%v), want CANCELLED", code, err)
		}
		if r, err := ac.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: d}); status.Code(err) != codes.NotFound {
			t.Errorf("the action cache has %v (%v) for the cancelled action, want NOT_FOUND", r, err)
		}
	})

	f.shutdown()
}
