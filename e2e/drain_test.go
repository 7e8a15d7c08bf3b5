package e2e

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/paddock-build/paddock/api/workerpb"
)

// TestDrainCommand: `paddock scheduler drain` stops a worker from getting
// work and, with --wait, returns once it is idle; `paddock scheduler
// undrain` takes that back; an unknown worker is an error naming it.
func TestDrainCommand(t *testing.T) {
	needPaddock(t)
	rs := newRoles(t)
	rs.startWorker("w1")

	out, err := exec.CommandContext(t.Context(), paddockBin, "scheduler", "drain", "--scheduler", rs.schedAddr, "--worker", "w1", "--wait").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "worker w1 drained and idle") {
		t.Fatalf("drain --wait: %v\n%s", err, out)
	}
	resp, err := rs.admin.ListWorkers(t.Context(), &workerpb.ListWorkersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	drained := false
	for _, w := range resp.Workers {
		drained = drained || (w.WorkerId == "w1" && w.Draining)
	}
	if !drained {
		t.Fatalf("w1 not listed as draining: %v", resp.Workers)
	}

	out, err = exec.CommandContext(t.Context(), paddockBin, "scheduler", "undrain", "--scheduler", rs.schedAddr, "--worker", "w1").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "worker w1 undrained") {
		t.Fatalf("undrain: %v\n%s", err, out)
	}
	if resp, err = rs.admin.ListWorkers(t.Context(), &workerpb.ListWorkersRequest{}); err != nil {
		t.Fatal(err)
	}
	for _, w := range resp.Workers {
		if w.WorkerId == "w1" && w.Draining {
			t.Fatalf("w1 still draining after undrain: %v", w)
		}
	}

	out, err = exec.CommandContext(t.Context(), paddockBin, "scheduler", "drain", "--scheduler", rs.schedAddr, "--worker", "nosuch").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "nosuch") {
		t.Fatalf("drain of an unknown worker: %v\n%s", err, out)
	}
	rs.stop()
}
