package scheduler

import (
	"testing"
)

// Deleting the only operation of a running execution stops it on its
// worker: nobody could reach it afterwards, and it would hold the slot
// for its whole timeout.
func TestDeletingTheOnlyWaiterStopsItsExecution(t *testing.T) {
	h := newHarness(t, nil)
	h.connect("a", 1, nil)
	h.execute("op1", "x", "", 0)
	queued := h.execute("op2", "y", "", 0)
	h.assignments()
	if err := h.c.Delete(h.now, "op2"); err != nil {
		t.Fatal(err)
	}
	if err := h.c.Delete(h.now, "op1"); err != nil {
		t.Fatal(err)
	}
	h.collect()
	if c := h.cancels("a"); len(c) != 1 || c[0] != "op1" {
		t.Fatalf("cancels sent to a = %v, want [op1]", c)
	}
	if !queued.done {
		t.Fatal("the deleted queued operation did not end")
	}
	h.result("a", "op1", 1, 137)
	if got := h.assignments(); len(got) != 0 {
		t.Fatalf("the deleted queued action was dispatched: %v", got)
	}
	if _, ok := h.c.ops["op1"]; ok {
		t.Fatal("deleted operation still known")
	}
	// A restart on the journal comes back to the same state.
	h.restart()
	if len(h.c.execs) != 0 || len(h.c.ops) != 0 {
		t.Fatalf("after replay: %d executions, %d operations, want none", len(h.c.execs), len(h.c.ops))
	}
}

// Deleting one of two merged operations leaves the execution to the other.
func TestDeletingOneOfTwoWaitersKeepsTheExecution(t *testing.T) {
	h := newHarness(t, nil)
	h.connect("a", 1, nil)
	h.execute("op1", "same", "i1", 0)
	op2 := h.execute("op2", "same", "i2", 0)
	h.assignments()
	if err := h.c.Delete(h.now, "op1"); err != nil {
		t.Fatal(err)
	}
	h.collect()
	if c := h.cancels("a"); len(c) != 0 {
		t.Fatalf("worker told to cancel %v although op2 still waits", c)
	}
	h.result("a", "op1", 1, 0)
	if !op2.done || statusCode(op2) != 0 {
		t.Fatalf("op2: done %v status %v, want OK", op2.done, op2.response.GetStatus())
	}
}
