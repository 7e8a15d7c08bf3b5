package runner

import (
	"context"
	"testing"
	"time"

	"github.com/paddock-build/paddock/sandbox"
)

// TestIDSlotsTransient: the lowest free slot is taken, and it is
// transient exactly when its index is not below the number of live Runs
// holding slots (itself included): when cancelled Runs still holding
// lower slots pushed it there. A worker that never cancels never gets a
// transient slot.
func TestIDSlotsTransient(t *testing.T) {
	type step struct {
		op            string // "acquire", "cancel" (the Run holding slot), "release" (slot)
		slot          int    // acquire: the slot wanted
		wantTransient bool
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"no cancellation", []step{
			{"acquire", 0, false}, {"acquire", 1, false}, {"acquire", 2, false},
			{"release", 1, false}, {"acquire", 1, false}, {"acquire", 3, false},
		}},
		{"a cancelled Run still holds slot 0", []step{
			{"acquire", 0, false}, {"cancel", 0, false},
			{"acquire", 1, true}, // the worker's next action
			{"release", 0, false}, {"acquire", 0, false},
		}},
		{"a storm walks up the slots", []step{
			{"acquire", 0, false}, {"acquire", 1, false},
			{"cancel", 0, false}, {"cancel", 1, false},
			{"acquire", 2, true}, {"acquire", 3, true},
			{"cancel", 2, false}, {"cancel", 3, false},
			{"acquire", 4, true}, {"acquire", 5, true},
			{"release", 1, false}, {"acquire", 1, false}, // below the 3 live Runs
		}},
		{"a live Run above counts", []step{
			{"acquire", 0, false}, {"acquire", 1, false}, {"acquire", 2, false},
			{"cancel", 0, false}, {"release", 1, false},
			{"acquire", 1, false}, // live: slots 1 and 2
		}},
		{"cancelled below and above", []step{
			{"acquire", 0, false}, {"acquire", 1, false}, {"acquire", 2, false},
			{"cancel", 0, false}, {"cancel", 2, false}, {"release", 1, false},
			{"acquire", 1, true}, // live: only itself
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newIDSlots(1000, 8)
			cancels := map[int]context.CancelFunc{}
			for i, st := range tc.steps {
				switch st.op {
				case "acquire":
					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					got, ok := s.acquire(ctx)
					if !ok || got.index != st.slot || got.transient != st.wantTransient ||
						got.hostBase != 1000+uint32(st.slot)*sandbox.DefaultIDRange {
						t.Fatalf("step %d: acquire = %+v, %v; want slot %d, transient %v", i, got, ok, st.slot, st.wantTransient)
					}
					cancels[got.index] = cancel
				case "cancel":
					cancels[st.slot]()
				case "release":
					s.release(st.slot)
				}
			}
		})
	}
}

// TestIDSlotsExhausted: past the last slot, acquire fails until one is
// released.
func TestIDSlotsExhausted(t *testing.T) {
	s := newIDSlots(0, 2)
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if _, ok := s.acquire(ctx); !ok {
			t.Fatalf("acquire %d failed", i)
		}
	}
	if got, ok := s.acquire(ctx); ok {
		t.Fatalf("acquire with every slot held = %+v", got)
	}
	s.release(1)
	if got, ok := s.acquire(ctx); !ok || got.index != 1 {
		t.Fatalf("acquire after releasing slot 1 = %+v, %v", got, ok)
	}
}

// With every slot held, a Run waits for one to be released (a cancelled
// Run's sandbox ending), up to its wait or its context's end, rather than
// failing at once.
func TestIDSlotsWaitForARelease(t *testing.T) {
	s := newIDSlots(0, 1)
	ctx := context.Background()
	held, ok := s.acquire(ctx)
	if !ok {
		t.Fatal("acquire failed")
	}
	got := make(chan bool)
	go func() {
		_, ok := s.acquireWithin(ctx, time.Hour)
		got <- ok
	}()
	s.release(held.index)
	if !<-got {
		t.Fatal("a Run waiting for a slot did not get the one released")
	}
	if _, ok := s.acquireWithin(ctx, time.Millisecond); ok {
		t.Fatal("acquired a slot held by another")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, ok := s.acquireWithin(cancelled, time.Hour); ok {
		t.Fatal("a cancelled Run got a held slot")
	}
}
