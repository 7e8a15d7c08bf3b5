package scheduler

import (
	"context"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
)

// With a journal, a restart keeps the running action (its worker
// reconnects and finishes it, without running it again), the queued ones
// (dispatched afterwards in their order) and the completed one, and every
// operation name from before answers WaitExecution.
func TestSchedulerRestartWithJournalKeepsOperations(t *testing.T) {
	cfg := testConfig()
	cfg.JournalDir = t.TempDir()
	first := startFarm(t, cfg, "", nil, nil)
	ctx := ctxTimeout(t)
	g := newGate()
	w := startTestWorker(t, first.addr, "w", 1, g.run("w"))

	start := func(f *farm, salt string) string {
		t.Helper()
		sctx, cancel := context.WithCancel(ctx)
		t.Cleanup(cancel)
		op, err := must(f.exec.Execute(sctx, executeRequest(f.action(t, salt, nil)))).Recv()
		if err != nil {
			t.Fatal(err)
		}
		return op.Name
	}
	running := start(first, "running")
	w.waitFor(t, "the action", func() bool { return w.c.Holding(running) })
	queued := []string{start(first, "queued-1"), start(first, "queued-2"), start(first, "queued-3")}
	hit := first.action(t, "cached", nil)
	first.ac.Put(ctx, "", hit, &repb.ActionResult{ExitCode: 7})
	cached, err := must(first.exec.Execute(ctx, executeRequest(hit))).Recv()
	if err != nil || !cached.Done {
		t.Fatalf("cache hit: %v, %v", cached, err)
	}

	first.stop()
	second := startFarm(t, cfg, first.addr, first.cas, first.ac)
	w.waitFor(t, "the reconnect", func() bool { return w.connects >= 2 })
	// The cache hit is still answerable.
	ops, err := collect(must(second.exec.WaitExecution(ctx, &repb.WaitExecutionRequest{Name: cached.Name})))
	if err != nil || responseOf(t, ops[len(ops)-1]).Result.GetExitCode() != 7 {
		t.Fatalf("WaitExecution of the cache hit after restart: %v, %v", ops, err)
	}
	// Every other operation finishes, seen through its original name.
	close(g.release)
	for _, name := range append([]string{running}, queued...) {
		ops, err := collect(must(second.exec.WaitExecution(ctx, &repb.WaitExecutionRequest{Name: name})))
		if err != nil {
			t.Fatalf("WaitExecution(%s) after restart: %v", name, err)
		}
		if resp := responseOf(t, ops[len(ops)-1]); resp.Result.GetExitCode() != 3 {
			t.Fatalf("%s: response %v, want the worker's result", name, resp)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.cancelled) != 0 {
		t.Fatalf("the worker was told to cancel %v; the restarted scheduler should have kept its action", w.cancelled)
	}
	var order []string
	for _, a := range w.assigned {
		order = append(order, a.OperationName)
		if a.Attempt != 1 {
			t.Fatalf("%s ran as attempt %d: nothing should have run twice", a.OperationName, a.Attempt)
		}
	}
	want := append([]string{running}, queued...)
	if len(order) != len(want) {
		t.Fatalf("assigned %v, want %v", order, want)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("assigned %v, want %v (queue order kept)", order, want)
		}
	}
}

// A worker that does not come back within reconnect_grace after a restart
// has its action requeued (counting a retry) to another worker.
func TestRestartRequeuesActionsOfWorkersThatDoNotReturn(t *testing.T) {
	cfg := testConfig()
	cfg.JournalDir = t.TempDir()
	first := startFarm(t, cfg, "", nil, nil)
	ctx := ctxTimeout(t)
	gone, stopGone := runTestWorker(first.addr, "gone", 1, blockRun)
	d := first.action(t, "orphan", nil)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	op, err := must(first.exec.Execute(sctx, executeRequest(d))).Recv()
	if err != nil {
		t.Fatal(err)
	}
	gone.waitFor(t, "the action", func() bool { return len(gone.assigned) == 1 })
	first.stop()
	// Stopping the worker now cannot give the action back: its scheduler
	// is gone.
	stopGone()
	second := startFarm(t, cfg, first.addr, first.cas, first.ac)
	other := startTestWorker(t, second.addr, "other", 1, okRun("other"))
	ops, err := collect(must(second.exec.WaitExecution(ctx, &repb.WaitExecutionRequest{Name: op.Name})))
	if err != nil {
		t.Fatal(err)
	}
	if resp := responseOf(t, ops[len(ops)-1]); resp.Result.GetExecutionMetadata().GetWorker() != "other" {
		t.Fatalf("response %v, want the result from the other worker", resp)
	}
	other.mu.Lock()
	defer other.mu.Unlock()
	if a := other.assigned[0]; a.OperationName != op.Name || a.Attempt != 2 {
		t.Fatalf("other got %s attempt %d, want %s attempt 2", a.OperationName, a.Attempt, op.Name)
	}
}
