package scheduler

import (
	"context"
	"sync/atomic"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/api/workerpb"
)

// executeSkip submits the action key with skip_cache_lookup.
func (h *harness) executeSkip(name, key string) *operation {
	h.t.Helper()
	op, err := h.c.Execute(h.now, submission{name: name, action: actionDigest(key), cacheable: true, skipCacheLookup: true})
	if err != nil {
		h.t.Fatalf("execute %s: %v", name, err)
	}
	h.collect()
	return op
}

// REv2: the result of an Execute with skip_cache_lookup must not have been
// visible before it was sent. It joins an identical execution while that
// one is queued (nothing ran yet), but once the execution runs (its
// worker may have written the action cache already) it gets one of its
// own, dispatched and completed apart. Ordinary Executes still join the
// running one, and the state replays and restores from a snapshot alike.
func TestSkipCacheLookupJoinsOnlyAQueuedExecution(t *testing.T) {
	h := newHarness(t, nil)
	first := h.execute("op1", "x", "", 0)
	queuedSkip := h.executeSkip("op2", "x")
	if queuedSkip.exec != first.exec {
		t.Fatal("a skip_cache_lookup Execute did not join the identical queued execution")
	}
	h.connect("w", 2, nil)
	if a := h.assignments(); len(a) != 1 || a[0] != (sentAssignment{"w", "op1", 1}) {
		t.Fatalf("assignments %v, want op1 alone", a)
	}
	own := h.executeSkip("op3", "x")
	if own.exec == first.exec || own.exec.id != "op3" || !own.exec.private {
		t.Fatalf("a skip_cache_lookup Execute joined execution %s, which was already running", own.exec.id)
	}
	if a := h.assignments(); len(a) != 1 || a[0] != (sentAssignment{"w", "op3", 1}) {
		t.Fatalf("assignments %v, want op3 sent apart", a)
	}
	later := h.execute("op4", "x", "", 0)
	if later.exec != first.exec {
		t.Fatalf("an ordinary Execute joined %s, want the running op1", later.exec.id)
	}
	checkSkipRestores(t, h)

	h.result("w", "op3", 1, 7)
	if !own.done || own.response.Result.ExitCode != 7 || first.done {
		t.Fatalf("op3 done %v with %v, op1 done %v; want op3 alone done with its own result (7)", own.done, own.response, first.done)
	}
	h.result("w", "op1", 1, 3)
	for _, op := range []*operation{first, queuedSkip, later} {
		if !op.done || op.response.Result.ExitCode != 3 {
			t.Fatalf("%s: done %v with %v, want op1's result (3)", op.name, op.done, op.response)
		}
	}
}

// checkSkipRestores checks that h's core, with op3 running apart from
// op1, replays from its records and restores from an encoded snapshot
// to the same state, in which ordinary Executes join op1, not op3.
func checkSkipRestores(t *testing.T, h *harness) {
	t.Helper()
	want := mustState(t, h.c)
	b, err := encodeState(want)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := decodeState(b)
	if err != nil {
		t.Fatal(err)
	}
	for what, c := range map[string]*core{"replayed": replayed(t, h.cfg, nil, nil, h.records), "restored": replayed(t, h.cfg, nil, snap, nil)} {
		if got := mustState(t, c); !equalStates(got, want) {
			t.Fatalf("%s: another state:\n got %+v\nwant %+v", what, got, want)
		}
		checkInflight(t, c)
		if e := c.inflight[dedupKey{"", "", actionDigest("x")}]; e == nil || e.id != "op1" || !c.execs["op3"].private {
			t.Fatalf("%s: Executes of x join %v, want op1; op3 private: %v", what, e, c.execs["op3"].private)
		}
	}
}

// checkInflight fails unless the executions Executes join are exactly the
// live cacheable ones that are not private.
func checkInflight(t *testing.T, c *core) {
	t.Helper()
	n := 0
	for _, e := range sortedValues(c.execs) {
		if joined := c.inflight[e.key] == e; joined != (e.cacheable && !e.private) {
			t.Fatalf("execution %s (cacheable %v, private %v) is joined: %v", e.id, e.cacheable, e.private, joined)
		}
		if c.inflight[e.key] == e {
			n++
		}
	}
	if n != len(c.inflight) {
		t.Fatalf("%d executions to join, %d of them live", len(c.inflight), n)
	}
}

// A snapshot written before executions could be private (version 2, by
// commit 221868a) is still restored: every cacheable execution in it is
// one that Executes join, and a new snapshot of it is of the current
// version.
func TestVersion2SnapshotIsRestored(t *testing.T) {
	c := restoreTestdata(t, "testdata/state-v2.bin", 2)
	checkInflight(t, c)
	if len(c.execs) != 5 || len(c.inflight) != 5 {
		t.Fatalf("restored %d executions, %d joinable; want 5 and 5", len(c.execs), len(c.inflight))
	}
	enc, err := encodeState(mustState(t, c))
	if err != nil {
		t.Fatal(err)
	}
	if back, err := decodeState(enc); err != nil || enc[0] != stateVersion || !equalStates(back, mustState(t, c)) {
		t.Fatalf("re-encoded snapshot: version %d, %v", enc[0], err)
	}
}

// Over gRPC: a worker writes the action cache before it reports (here it
// then holds its report back). An Execute with skip_cache_lookup sent
// after the result became visible does not get that result: it runs
// again, on its own, while the first Execute still gets the first run's.
func TestSkipCacheLookupDoesNotJoinARunningExecution(t *testing.T) {
	f := startFarm(t, testConfig(), "", nil, nil)
	ctx := ctxTimeout(t)
	d := f.action(t, "visible", nil)
	written, hold := make(chan struct{}), make(chan struct{})
	var runs atomic.Int32
	startTestWorker(t, f.addr, "w", 2, func(ctx context.Context, a *workerpb.Assignment) *repb.ExecuteResponse {
		if runs.Add(1) > 1 {
			return &repb.ExecuteResponse{Result: &repb.ActionResult{ExitCode: 7}}
		}
		res := &repb.ActionResult{ExitCode: 3}
		if err := f.ac.Put(ctx, "", d, res); err != nil {
			return nil
		}
		close(written)
		select {
		case <-hold:
			return &repb.ExecuteResponse{Result: res}
		case <-ctx.Done():
			return nil
		}
	}, linux)
	first := must(f.exec.Execute(ctx, executeRequest(d)))
	firstOp := must(first.Recv())
	select {
	case <-written:
	case <-ctx.Done():
		t.Fatal("the first run never wrote the action cache")
	}

	req := executeRequest(d)
	req.SkipCacheLookup = true
	skip := must(f.exec.Execute(ctx, req))
	skipOp := must(skip.Recv())
	f.s.mu.Lock()
	joined := f.s.core.ops[skipOp.Name].exec == f.s.core.ops[firstOp.Name].exec
	f.s.mu.Unlock()
	if joined {
		close(hold)
		t.Fatal("the skip_cache_lookup Execute joined the running execution, whose result the action cache already showed")
	}
	ops, err := collect(skip)
	if err != nil {
		t.Fatalf("skip_cache_lookup Execute: %v", err)
	}
	if resp := responseOf(t, ops[len(ops)-1]); resp.CachedResult || resp.Result.GetExitCode() != 7 {
		t.Fatalf("skip_cache_lookup Execute got %v, want the second run's result (7)", resp)
	}
	close(hold)
	ops, err = collect(first)
	if err != nil {
		t.Fatal(err)
	}
	if resp := responseOf(t, ops[len(ops)-1]); resp.Result.GetExitCode() != 3 {
		t.Fatalf("first Execute got %v, want the first run's result (3)", resp)
	}
	if n := runs.Load(); n != 2 {
		t.Fatalf("%d runs, want 2", n)
	}
}
