package scheduler

import (
	"fmt"
	"testing"
)

// TestCancelledExecutionsLeaveABlockedQueue: executions cancelled behind
// a queue's head that cannot run (no worker serves the queue) are let go
// at once, not when the head moves: an invocation whose last queued
// execution is cancelled leaves the ring, and one invocation's FIFO keeps
// a bounded number of cancelled entries. Before, each cancelled
// execution stayed referenced, RequestMetadata and all, while the head
// was blocked: 200 MB for a tenant at max_queued 20.
func TestCancelledExecutionsLeaveABlockedQueue(t *testing.T) {
	h := newHarness(t, nil) // no worker: the queue's head never moves
	h.execute("blocker", "blocker", "inv-blocker", 0)
	for i := range 2000 {
		name := fmt.Sprint("distinct-", i)
		h.execute(name, name, "inv-"+name, 0) // an invocation each
		if err := h.c.Cancel(h.now, name); err != nil {
			t.Fatal(err)
		}
		name = fmt.Sprint("same-", i)
		h.execute(name, name, "inv-same", 0)
		if err := h.c.Cancel(h.now, name); err != nil {
			t.Fatal(err)
		}
	}
	h.execute("last", "last", "inv-same", 0)
	h.collect()
	if len(h.c.queues) != 1 {
		t.Fatalf("%d queues, want 1", len(h.c.queues))
	}
	for _, q := range h.c.queues {
		if q.size != 2 || len(q.buckets) != 1 {
			t.Fatalf("queue size %d in %d priority levels, want 2 in 1", q.size, len(q.buckets))
		}
		b := q.buckets[0]
		if len(b.ring) != 2 || len(b.byInv) != 2 {
			t.Fatalf("%d invocations in the ring (%d by id), want the 2 with a queued execution", len(b.ring), len(b.byInv))
		}
		for _, f := range b.ring {
			if held := len(f.entries) - f.head; held > f.live+fifoSlack+1 {
				t.Fatalf("invocation %s holds %d entries for %d queued", f.id, held, f.live)
			}
		}
	}
	// The order is unchanged: the blocker first, then the last one.
	h.connect("w", 2, nil)
	got := h.assignments()
	if len(got) != 2 || got[0].name != "blocker" || got[1].name != "last" {
		t.Fatalf("dispatched %v, want blocker then last", got)
	}
}
