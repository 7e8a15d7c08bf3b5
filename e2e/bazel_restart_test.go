package e2e

import (
	"os"
	"testing"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/internal/grpctest"
)

// TestBazelBuildAcrossSchedulerRestart: while Bazel's one action runs on a
// worker, the scheduler (`paddock scheduler --journal-dir`) is killed with
// SIGKILL and started again on its journal, and then stopped with SIGINT
// (`systemctl restart`) and started again. The worker reconnects holding
// the action and finishes it; Bazel follows its operation through
// WaitExecution and the build succeeds, without Bazel executing the action
// again (the restarted scheduler knows one operation, the original) and
// without the action running twice. (A SIGINT used to fail the build: the
// stopping scheduler kept Bazel's streams open while its port was closed,
// and Bazel spent its retries.)
func TestBazelBuildAcrossSchedulerRestart(t *testing.T) {
	needPaddock(t)
	b := newBazel(t)
	rs := newJournaledRoles(t)
	rs.startWorker("w1")
	g := newGate(t)
	// Bazel's default retry budget (5 retries from 100 ms, about 3 s, cut
	// short by gRPC-java's own reconnect backoff) is about one restart
	// long on a loaded machine: given more, as docs/scheduler.md advises.
	// That the stopping scheduler ends the streams at once, rather than
	// holding them for seconds with its port closed, is
	// scheduler/TestStoppingEndsClientStreams.
	running, done := startGatedBuild(t, b, rs.schedAddr, g, "--remote_retries=10")
	before := operationNames(t, rs)
	if len(before) != 1 {
		t.Fatalf("operations before the restart: %v, want Bazel's one", before)
	}

	for _, sig := range []os.Signal{nil, os.Interrupt} {
		rs.restartSchedulerAfter(sig)
		// The worker comes back holding the action and keeps it.
		waitFor(t, "worker w1 reconnected to the restarted scheduler", faultLimit, func() bool {
			resp, err := rs.admin.ListWorkers(t.Context(), &workerpb.ListWorkersRequest{})
			return err == nil && len(resp.Workers) == 1 && resp.Workers[0].Connected && resp.Workers[0].Running == 1
		})
	}
	if _, err := running.Write([]byte("go\n")); err != nil {
		t.Fatalf("telling the gated action to go: %v", err)
	}
	running.Close()

	checkGatedBuild(t, b, done, "across a scheduler restart")
	if after := operationNames(t, rs); len(after) != 1 || after[0] != before[0] {
		t.Errorf("operations after the build: %v, want only %v: Bazel executed the action again", after, before)
	}
	select {
	case c := <-g.conns:
		c.Close()
		t.Error("the action ran a second time")
	default:
	}
	b.Shutdown()
	rs.stop()
}

// operationNames lists the scheduler's operations.
func operationNames(t *testing.T, rs *roles) []string {
	t.Helper()
	resp, err := longrunningpb.NewOperationsClient(grpctest.Dial(t, rs.schedAddr)).ListOperations(t.Context(), &longrunningpb.ListOperationsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, op := range resp.Operations {
		names = append(names, op.Name)
	}
	return names
}
