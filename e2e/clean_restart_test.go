package e2e

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestCleanRestartsCountNoRetry: an action interrupted by a clean stop
// of `paddock up` (SIGTERM) is given back by the worker before the
// scheduler stops, and runs again after the restart without a retry
// counted against it. With max_retries 0, one clean restart is enough to
// tell: when the roles stopped together, the scheduler closed the
// worker's session first, counted a retry, and the action failed
// UNAVAILABLE (with the default of 3, four restarts failed a long
// action).
func TestCleanRestartsCountNoRetry(t *testing.T) {
	needPaddock(t)
	cfg := filepath.Join(searchableTempDir(t), "up.yaml")
	if err := os.WriteFile(cfg, []byte("version: 1\nscheduler:\n  max_retries: 0\nrunner:\n  allow_host_network: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, c := startUpClient(t, "--config", cfg)
	g := newGate(t)
	d := c.prepare(t.Context(), g.action())
	stream, err := c.exec.Execute(t.Context(), &repb.ExecuteRequest{InstanceName: c.instance, ActionDigest: d, SkipCacheLookup: true})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	checkKilledLater := g.attempt(faultLimit)
	f.stop(syscall.SIGTERM)
	checkKilled(t, checkKilledLater, faultLimit)

	f = startUp(t, f.data, "--config", cfg)
	c = newClient(t, f.addr)
	waited := make(chan execResult, 1)
	go func() {
		ws, err := c.exec.WaitExecution(t.Context(), &repb.WaitExecutionRequest{Name: first.Name})
		for err == nil {
			var op *longrunningpb.Operation
			if op, err = ws.Recv(); err == nil && op.Done {
				resp, err := operationResponse(op)
				waited <- execResult{resp, err}
				return
			}
		}
		waited <- execResult{nil, err}
	}()
	select {
	case r := <-waited:
		t.Fatalf("the interrupted action ended without running again after a clean restart: %v, %v", r.resp.GetStatus(), r.err)
	case second, ok := <-g.conns:
		if !ok {
			t.Fatal("gate closed")
		}
		g.started(second, faultLimit)
		if _, err := second.Write([]byte("go\n")); err != nil {
			t.Fatal(err)
		}
		second.Close()
	}
	r := awaitRetried(t, waited, "after a clean restart")
	if st := status.FromProto(r.resp.Status); st.Code() != codes.OK {
		t.Errorf("status %v", st)
	}
	f.shutdown()
}
