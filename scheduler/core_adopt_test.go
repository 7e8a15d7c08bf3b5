package scheduler

import (
	"testing"

	"github.com/paddock-build/paddock/api/workerpb"
)

// Adoption takes back only what a restart may have lost: an action queued
// since the scheduler recovered, held by a worker that serves its queue,
// is not paused and has a slot. Otherwise any worker could take any
// queued action by naming it in Register.running.
func TestAWorkerCannotAdoptWhatItWasNotSent(t *testing.T) {
	gpu := &workerpb.Property{Name: "Pool", Value: "gpu"}
	h := newHarness(t, nil)
	h.execute("gpu", "g", "", 0, gpu)
	h.execute("plain1", "p1", "", 0)
	h.execute("plain2", "p2", "", 0)
	held := func(names ...string) []*workerpb.InHand {
		var out []*workerpb.InHand
		for _, n := range names {
			out = append(out, &workerpb.InHand{OperationName: n, Attempt: 1})
		}
		return out
	}
	stage := func(name string) string { return h.c.execs[name].stage.String() }

	// No restart: nothing is adopted, whatever the worker claims.
	h.c.Connect(h.now, registration{id: "rogue", capacity: 1, running: held("gpu"), paused: true})
	h.collect()
	if stage("gpu") != "QUEUED" || len(h.cancels("rogue")) != 1 {
		t.Fatalf("without a restart: gpu %s, cancels %v; want it queued and the claim cancelled", stage("gpu"), h.cancels("rogue"))
	}
	h.c.Connect(h.now, registration{id: "rogue", capacity: 1, running: held("plain1")})
	h.collect()
	if e := h.c.execs["plain1"]; e.stage.String() == "EXECUTING" && e.attempt == 1 && len(h.assignments()) == 0 {
		t.Fatal("without a restart, a claimed action was adopted")
	}

	h = newHarness(t, nil)
	h.execute("gpu", "g", "", 0, gpu)
	h.execute("plain1", "p1", "", 0)
	h.execute("plain2", "p2", "", 0)
	h.restart()
	// After a restart: not past routing, pause or capacity.
	h.c.Connect(h.now, registration{id: "elsewhere", capacity: 2, running: held("gpu", "plain1"), instances: []string{"elsewhere"}})
	h.c.Connect(h.now, registration{id: "paused", capacity: 2, running: held("plain1"), paused: true})
	h.collect()
	if stage("gpu") != "QUEUED" || stage("plain1") != "QUEUED" {
		t.Fatalf("gpu %s, plain1 %s, claimed by workers not serving them or paused; want both queued", stage("gpu"), stage("plain1"))
	}
	h.connect("small", 1, held("plain1", "plain2"))
	if n := len(h.c.workers["small"].running); n != 1 {
		t.Fatalf("a worker of one slot runs %d actions after claiming two", n)
	}
}

// A worker's slots count what it already runs (restored from the journal)
// before anything is adopted, whatever the order it lists them in.
func TestAdoptionCountsWhatTheWorkerAlreadyRuns(t *testing.T) {
	h := newHarness(t, nil)
	h.connect("w", 1, nil)
	h.execute("a", "a", "", 0)
	h.execute("b", "b", "", 0)
	h.execute("c", "c", "", 0)
	if got := h.assignments(); len(got) != 1 || got[0].name != "a" {
		t.Fatalf("dispatched %v, want a", got)
	}
	h.restart()
	h.connect("w", 1, []*workerpb.InHand{{OperationName: "b", Attempt: 1}, {OperationName: "c", Attempt: 1}, {OperationName: "a", Attempt: 1}})
	if n := len(h.c.workers["w"].running); n != 1 || h.c.workers["w"].running["a"] == nil {
		t.Fatalf("w runs %d actions (%v), want a alone in its one slot", n, h.c.workers["w"].running)
	}
	if c := h.cancels("w"); len(c) != 2 {
		t.Fatalf("cancels %v, want b and c", c)
	}
}
