package runner

import (
	"context"
	"sync"
	"time"

	"github.com/paddock-build/paddock/sandbox"
)

// idSlots hands out host id ranges to running sandboxes: slot i maps
// container ids 0..65535 to host ids base+i*65536 onwards. Two sandboxes
// running at once never share a slot, so neither can touch the files the
// other creates (nor signal or ptrace its processes). The lowest free slot
// is taken, so that sequential actions reuse slot 0 and the sandbox
// spawner's pre-started init (kept per id mapping) fits them. Safe for
// concurrent use.
//
// A cancelled Run holds its slot until its sandbox has ended (up to
// kill_grace), while the worker, whose call returned at once, starts its
// next action: that one takes a slot past those the worker's concurrency
// needs. Such a slot is transient, and the launcher keeps no init warm for
// it (sandbox.Request.Transient). So inits are kept warm only for slots
// below the most live (not cancelled) Runs held at once. The spawner
// keeps them per id mapping: without this, a storm of cancellations,
// walking new actions up through the slots, left Options.WarmInits of
// them for every slot it reached (up to 16 slots), for good.
type idSlots struct {
	base  uint32
	mu    sync.Mutex
	runs  []context.Context // the context of the Run holding each slot; nil: free
	freed chan struct{}     // closed (and replaced) at each release
}

// slotWait is how long a Run waits for a slot beyond kill_grace: a
// cancelled Run's sandbox ends within kill_grace, and its kill takes a
// moment more.
const slotWait = 10 * time.Second

// idSlot is a slot taken by acquire.
type idSlot struct {
	index    int
	hostBase uint32
	// transient: the index is not below the number of live Runs holding
	// slots (this one included), so the slot is needed only because
	// cancelled Runs still hold lower ones. A Run taking the lowest free
	// slot while no holder is cancelled is never transient.
	transient bool
}

func newIDSlots(base uint32, n int) *idSlots {
	return &idSlots{base: base, runs: make([]context.Context, n), freed: make(chan struct{})}
}

// acquireWithin is acquire, waiting up to wait for a slot to be released
// while every one is held, or until ctx ends. With every slot in use,
// one held by a cancelled Run is freed once its sandbox has ended (up to
// kill_grace): the worker, whose call returned at once, had already sent
// the next action, which failed UNAVAILABLE at once, and so did each of
// the scheduler's retries of it, all within 11 ms (outside probe).
func (s *idSlots) acquireWithin(ctx context.Context, wait time.Duration) (idSlot, bool) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		s.mu.Lock()
		freed := s.freed
		s.mu.Unlock()
		if slot, ok := s.acquire(ctx); ok {
			return slot, true
		}
		select {
		case <-freed:
		case <-timer.C:
			return idSlot{}, false
		case <-ctx.Done():
			return idSlot{}, false
		}
	}
}

// acquire returns a free slot for the Run whose context is ctx, or false
// if all are in use.
func (s *idSlots) acquire(ctx context.Context) (idSlot, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	free, cancelled := -1, 0 // cancelled: Runs holding slots below free
	for i, r := range s.runs {
		if r == nil {
			free = i
			break
		}
		if r.Err() != nil {
			cancelled++
		}
	}
	if free < 0 {
		return idSlot{}, false
	}
	s.runs[free] = ctx
	slot := idSlot{index: free, hostBase: s.base + uint32(free)*sandbox.DefaultIDRange}
	if cancelled > 0 {
		// Every slot below is held: the live Runs are those of them not
		// cancelled, this one, and the live ones above.
		live := free - cancelled + 1
		for _, r := range s.runs[free+1:] {
			if r != nil && r.Err() == nil {
				live++
			}
		}
		slot.transient = free >= live
	}
	return slot, true
}

func (s *idSlots) release(slot int) {
	s.mu.Lock()
	s.runs[slot] = nil
	close(s.freed)
	s.freed = make(chan struct{})
	s.mu.Unlock()
}
