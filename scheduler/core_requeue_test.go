package scheduler

import (
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
)

// failRetryably reports attempt of name on worker as UNAVAILABLE without a
// result, as a worker whose runner is dead does.
func (h *harness) failRetryably(worker, name string, attempt int32) {
	h.t.Helper()
	h.c.Result(h.now, worker, h.gens[worker], name, attempt, &repb.ExecuteResponse{
		Status: &rpcstatus.Status{Code: int32(code.Code_UNAVAILABLE), Message: "runner not ready"}})
	h.collect()
}

// wantRetryBackOnA runs action x on worker a, fails it retryably and
// wants attempt 2 on a again: what a retry does when no other worker could
// run it (why says which case).
func (h *harness) wantRetryBackOnA(why string) {
	h.t.Helper()
	h.connect("a", 1, nil)
	h.execute("x", "x", "", 0)
	h.assignments()
	h.failRetryably("a", "x", 1)
	if got := h.assignments(); len(got) != 1 || got[0] != (sentAssignment{"a", "x", 2}) {
		h.t.Fatalf("retry %v, want attempt 2 on a (%s)", got, why)
	}
}

// TestRetryGoesToAnotherWorker: an action that failed on a worker (its
// runner dead) is not handed straight back to that worker, free again at
// once, while another worker could run it: it waits for the other one,
// which takes it as soon as it has a free slot; the passed-over worker
// then gets the work queued behind it at once.
func TestRetryGoesToAnotherWorker(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxRetries = 3 })
	h.connect("b", 1, nil)
	h.execute("busy", "busy", "", 0)
	h.connect("a", 1, nil)
	h.execute("x", "x", "", 0)
	h.execute("y", "y", "", 0)
	if got := h.assignments(); len(got) != 2 || got[0] != (sentAssignment{"b", "busy", 1}) || got[1] != (sentAssignment{"a", "x", 1}) {
		t.Fatalf("dispatches %v, want busy on b and x on a", got)
	}
	h.failRetryably("a", "x", 1)
	if got := h.assignments(); len(got) != 0 {
		t.Fatalf("after x failed on a: %v, want nothing until b is free (x avoids a; y waits behind x)", got)
	}
	h.heartbeat("b")
	h.result("b", "busy", 1, 0)
	got := h.assignments()
	if len(got) != 2 || got[0] != (sentAssignment{"b", "x", 2}) || got[1] != (sentAssignment{"a", "y", 1}) {
		t.Fatalf("once b is free: %v, want x attempt 2 on b, then y on a", got)
	}
	if op := h.c.ops["x"]; op.done {
		t.Fatalf("x completed: %v", op.response.GetStatus())
	}
}

// TestRetryAvoidsItsWorkerOnlyWhileAnotherCouldRunIt: the avoided worker
// runs the action after all when it is the only worker, when the other
// is drained, or when the others stayed busy for LeaseDuration; an
// action is never starved by its avoidance.
func TestRetryAvoidsItsWorkerOnlyWhileAnotherCouldRunIt(t *testing.T) {
	t.Run("only worker", func(t *testing.T) {
		h := newHarness(t, nil)
		h.wantRetryBackOnA("a is the only worker")
	})
	busyOther := func(t *testing.T) *harness {
		h := newXOnAWithBBusy(t)
		h.failRetryably("a", "x", 1)
		if got := h.assignments(); len(got) != 0 {
			t.Fatalf("retry %v while b could take it", got)
		}
		return h
	}
	t.Run("other drained", func(t *testing.T) {
		h := busyOther(t)
		h.drain("b")
		h.advance(time.Second)
		if got := h.assignments(); len(got) != 1 || got[0] != (sentAssignment{"a", "x", 2}) {
			t.Fatalf("with b drained: %v, want attempt 2 on a", got)
		}
	})
	t.Run("other busy for a lease", func(t *testing.T) {
		h := busyOther(t)
		for range 2 {
			h.advance(14 * time.Second)
			h.heartbeat("a")
			h.heartbeat("b")
		}
		if got := h.assignments(); len(got) != 0 {
			t.Fatalf("retry %v within the lease duration", got)
		}
		h.advance(2 * time.Second)
		if got := h.assignments(); len(got) != 1 || got[0] != (sentAssignment{"a", "x", 2}) {
			t.Fatalf("after the lease duration: %v, want attempt 2 on a", got)
		}
	})
}

// newXOnAWithBBusy starts worker b on action "busy", then worker a on
// action "x": when a fails or loses x, b could run it once free, so the
// scheduler must choose between them.
func newXOnAWithBBusy(t *testing.T) *harness {
	h := newHarness(t, nil)
	h.connect("b", 1, nil)
	h.execute("busy", "busy", "", 0)
	h.connect("a", 1, nil)
	h.execute("x", "x", "", 0)
	h.assignments()
	return h
}

// TestLostWorkersActionGoesElsewhere: an action whose worker lost it (its
// stream broke past reconnect_grace) is not given back to that worker
// when it returns while another could run it.
func TestLostWorkersActionGoesElsewhere(t *testing.T) {
	h := newXOnAWithBBusy(t)
	h.c.Disconnect(h.now, "a", h.gens["a"])
	h.heartbeat("b")
	h.advance(11 * time.Second) // a lost: x requeued
	h.connect("a", 1, nil)
	if got := h.assignments(); len(got) != 0 {
		t.Fatalf("returning worker got %v, want x left for b", got)
	}
	h.result("b", "busy", 1, 0)
	if got := h.assignments(); len(got) != 1 || got[0] != (sentAssignment{"b", "x", 2}) {
		t.Fatalf("once b is free: %v, want x attempt 2 on b", got)
	}
}
