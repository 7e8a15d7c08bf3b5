package scheduler

import "testing"

// TestPausedWorkerGetsNoWorkUntilItResumes: a worker that registers
// paused (its runner is down), or pauses later, is given nothing new,
// and keeps the actions it holds; when it resumes it is given work at
// once. Operators see the pause in ListWorkers.
func TestPausedWorkerGetsNoWorkUntilItResumes(t *testing.T) {
	h := newHarness(t, nil)
	h.gens["w"] = h.c.Connect(h.now, registration{id: "w", capacity: 2, paused: true, pauseReason: "runner not ready"})
	h.collect()
	h.execute("op1", "1", "", 0)
	if got := h.assignments(); len(got) != 0 {
		t.Fatalf("a worker that registered paused got %v", got)
	}
	if info := h.c.Workers()[0]; !info.Paused || info.PauseReason != "runner not ready" {
		t.Fatalf("ListWorkers shows %v, want paused with its reason", info)
	}
	h.c.Pause(h.now, "w", h.gens["w"], false, "")
	h.collect()
	if got := h.assignments(); len(got) != 1 || got[0] != (sentAssignment{"w", "op1", 1}) {
		t.Fatalf("on resuming: %v, want op1", got)
	}
	h.c.Pause(h.now, "w", h.gens["w"], true, "storage unreachable")
	h.collect()
	h.execute("op2", "2", "", 0)
	if got := h.assignments(); len(got) != 0 {
		t.Fatalf("a worker that paused got %v", got)
	}
	h.result("w", "op1", 1, 0)
	if op := h.c.ops["op1"]; !op.done {
		t.Fatal("a paused worker's result was not taken")
	}
	if got := h.assignments(); len(got) != 0 {
		t.Fatalf("a paused worker got %v when a slot freed", got)
	}
	// A new session says its state again: the pause does not outlive it.
	h.connect("w", 2, nil)
	if got := h.assignments(); len(got) != 1 || got[0].name != "op2" {
		t.Fatalf("after registering unpaused: %v, want op2", got)
	}
	if info := h.c.Workers()[0]; info.Paused {
		t.Fatalf("ListWorkers shows %v, want not paused", info)
	}
}

// TestPausedWorkerIsNoOtherWorkerToWaitFor: an action that failed on a
// worker does not wait for another worker that is paused.
func TestPausedWorkerIsNoOtherWorkerToWaitFor(t *testing.T) {
	h := newHarness(t, nil)
	h.gens["b"] = h.c.Connect(h.now, registration{id: "b", capacity: 1, paused: true, pauseReason: "runner not ready"})
	h.wantRetryBackOnA("b is paused")
}
