package scheduler

import (
	"fmt"
	"testing"
)

// TestCancelledExecutionsLeaveABlockedQueue: executions cancelled behind
// a queue's head that cannot run (no worker serves the queue) are let go
// without waiting for the head to move: the invocations left with nothing
// queued, and one invocation's cancelled entries, are bounded by what is
// queued (and a slack). Before, each cancelled execution stayed
// referenced, RequestMetadata and all, while the head was blocked: 200 MB
// for a tenant at max_queued 20. The compactions are part of the queue's
// state: a replay of the records, and a snapshot with the records after
// it, give the live state.
func TestCancelledExecutionsLeaveABlockedQueue(t *testing.T) {
	h := newHarness(t, nil) // no worker: the queue's head never moves
	h.execute("blocker", "blocker", "inv-blocker", 0)
	var snap *coreState
	snapAt := 0
	for i := range 2000 {
		if i == 777 {
			snap, snapAt = encoded(t, mustState(t, h.c)), len(h.records)
		}
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
	want := mustState(t, h.c)
	if got := mustState(t, replayed(t, h.cfg, nil, nil, h.records)); !equalStates(got, want) {
		t.Fatal("a replay of the records gave another state")
	}
	if got := mustState(t, replayed(t, h.cfg, nil, snap, h.records[snapAt:])); !equalStates(got, want) {
		t.Fatal("a snapshot and the records after it gave another state")
	}
	if len(h.c.queues) != 1 {
		t.Fatalf("%d queues, want 1", len(h.c.queues))
	}
	for _, q := range h.c.queues {
		if q.size != 2 || len(q.buckets) != 1 {
			t.Fatalf("queue size %d in %d priority levels, want 2 in 1", q.size, len(q.buckets))
		}
		b := q.buckets[0]
		if len(b.ring) > 2+fifoSlack+1 || len(b.byInv) != len(b.ring) {
			t.Fatalf("%d invocations in the ring (%d by id), want the 2 with a queued execution and at most %d others", len(b.ring), len(b.byInv), fifoSlack+1)
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

// encoded is st through its encoding, as a snapshot on disk has it.
func encoded(t *testing.T, st *coreState) *coreState {
	t.Helper()
	b, err := encodeState(st)
	if err != nil {
		t.Fatal(err)
	}
	if st, err = decodeState(b); err != nil {
		t.Fatal(err)
	}
	return st
}
