package scheduler

import (
	"testing"
	"time"
)

// TestWorkersLostInOneTickCostOneRetry: when every worker's lease runs out
// at once (a network partition, or a stall of the scheduler not forgiven),
// an action held by one of them is requeued once, and waits: it is not
// dispatched to another worker being lost in the same tick. Before, each
// loss handed it to the next expired worker, and one tick used up
// max_retries and failed it with UNAVAILABLE.
func TestWorkersLostInOneTickCostOneRetry(t *testing.T) {
	h := newHarness(t, nil) // MaxRetries 2
	for _, id := range []string{"a", "b", "c", "d"} {
		h.connect(id, 1, nil)
	}
	h.execute("x", "x", "", 0)
	if got := h.assignments(); len(got) != 1 {
		t.Fatalf("dispatches %v, want x on one worker", got)
	}
	h.advance(h.cfg.LeaseDuration)
	if len(h.c.workers) != 0 {
		t.Fatalf("%d workers left after every lease ran out", len(h.c.workers))
	}
	op := h.c.ops["x"]
	if op.done {
		t.Fatalf("x completed with %v: its retries were used up by one tick", op.response.GetStatus())
	}
	if e := h.c.execs["x"]; e == nil || e.retries != 1 || e.worker != nil {
		t.Fatalf("x after the tick: %+v; want queued with one retry", e)
	}
	if got := h.assignments(); len(got) != 0 {
		t.Fatalf("dispatches %v to workers being lost", got)
	}
	h.connect("a", 1, nil)
	if got := h.assignments(); len(got) != 1 || got[0] != (sentAssignment{"a", "x", 2}) {
		t.Fatalf("once a worker is back: %v, want x attempt 2 on it", got)
	}
}

// TestStallOfTheSchedulerLosesNoWorker: after the scheduler itself did not
// run for longer than a lease (ForgiveStall, told the gap by the tick
// loop), no worker is lost and the running action stays with its worker,
// whose heartbeat then renews its lease; a worker that stays silent for a
// lease after the stall is lost as before.
func TestStallOfTheSchedulerLosesNoWorker(t *testing.T) {
	h, first := newXOnAOrB(t)
	stall := h.cfg.LeaseDuration + 6*time.Second
	h.now = h.now.Add(stall)
	h.c.ForgiveStall(h.now, stall)
	h.advance(0)
	if len(h.c.workers) != 2 {
		t.Fatalf("%d workers left after a stall of the scheduler, want both", len(h.c.workers))
	}
	if e := h.c.execs["x"]; e == nil || e.retries != 0 || e.worker == nil || e.worker.id != first.worker {
		t.Fatalf("x after the stall: %+v; want still on %s with no retry", e, first.worker)
	}
	h.heartbeat(first.worker)
	h.advance(h.cfg.LeaseDuration - time.Second)
	h.heartbeat(first.worker)
	h.advance(time.Second)
	if _, ok := h.c.workers[first.worker]; !ok || len(h.c.workers) != 1 {
		t.Fatalf("workers %v a lease after the stall; want only the one that sent heartbeats", h.c.workers)
	}
}
