package scheduler

import (
	"fmt"
	"testing"

	"github.com/paddock-build/paddock/api/workerpb"
)

// Queue keys are the clients' (instance names, routing values): a queue
// lives while it has live executions, however they end (completed,
// cancelled while queued or running, deleted, abandoned), so that one
// client cannot grow the scheduler, its snapshots and its scrapes with
// queues it made once. A queue made again works as before.
func TestEmptyQueuesAreDropped(t *testing.T) {
	h := newHarness(t, nil)
	pool := func(i int) *workerpb.Property { return &workerpb.Property{Name: "Pool", Value: fmt.Sprintf("p%d", i)} }
	h.connect("a", 2, nil, pool(0), pool(1))
	h.execute("run0", "k0", "", 0, pool(0))
	h.execute("run1", "k1", "", 0, pool(1))
	for i := 2; i < 50; i++ {
		h.execute(fmt.Sprintf("q%d", i), fmt.Sprintf("k%d", i), "", 0, pool(i))
	}
	if len(h.c.queues) != 50 {
		t.Fatalf("%d queues, want 50", len(h.c.queues))
	}
	if got := h.assignments(); len(got) != 2 {
		t.Fatalf("dispatched %v, want run0 and run1", got)
	}
	h.result("a", "run0", 1, 0)
	if err := h.c.Cancel(h.now, "run1"); err != nil {
		t.Fatal(err)
	}
	for i := 2; i < 50; i++ {
		var err error
		switch name := fmt.Sprintf("q%d", i); i % 3 {
		case 0:
			err = h.c.Cancel(h.now, name)
		case 1:
			err = h.c.Delete(h.now, name)
		default:
			err = h.c.Abandon(h.now, name, "abandoned: no client followed it")
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	h.collect()
	tn := h.c.tenants[""]
	if len(h.c.queues) != 0 || len(tn.queues) != 0 || len(h.c.workers["a"].queues) != 0 || len(h.c.queuedPerInstance) != 0 {
		t.Fatalf("left: %d queues, tenant's %d, worker's %d, %d instance counts; want none",
			len(h.c.queues), len(tn.queues), len(h.c.workers["a"].queues), len(h.c.queuedPerInstance))
	}
	if st := mustState(t, h.c); len(st.Queues) != 0 {
		t.Fatalf("the snapshot holds %d queues", len(st.Queues))
	}
	h.restart()
	if len(h.c.queues) != 0 {
		t.Fatalf("after a replay: %d queues", len(h.c.queues))
	}
	// The cancelled run1 still holds its slot until its worker reports it.
	h.connect("a", 2, []*workerpb.InHand{{OperationName: "run1", Attempt: 1}}, pool(0), pool(1))
	op := h.execute("again", "k0", "", 0, pool(0))
	if got := h.assignments(); len(got) != 1 || got[0].name != "again" {
		t.Fatalf("dispatched %v, want again", got)
	}
	h.result("a", "again", 1, 0)
	if !op.done || len(h.c.queues) != 0 {
		t.Fatalf("again done %v, %d queues left", op.done, len(h.c.queues))
	}
}
