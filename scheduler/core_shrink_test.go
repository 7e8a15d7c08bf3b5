package scheduler

import (
	"fmt"
	"testing"
	"time"
)

// TestCoreMapsAreMadeAgainAfterABurst: after a burst of queued actions has
// been cancelled and its operations have expired, the next tick makes the
// core's maps again at their size (a Go map keeps the room it grew to),
// and what is still live is all there.
func TestCoreMapsAreMadeAgainAfterABurst(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.CompletedRetention = time.Minute
		c.MaxQueuedPerInstance = 0
	})
	const burst = 3 * shrinkFrom
	for i := range burst {
		h.execute(fmt.Sprint("op", i), fmt.Sprint("action", i), "", 0)
	}
	h.advance(time.Second)
	if h.c.peaks.ops < burst || h.c.peaks.execs < burst || h.c.peaks.inflight < burst {
		t.Fatalf("peaks %+v after a burst of %d", h.c.peaks, burst)
	}
	for i := range burst - 10 {
		if err := h.c.Cancel(h.now, fmt.Sprint("op", i)); err != nil {
			t.Fatal(err)
		}
		h.collect()
	}
	h.advance(2 * time.Minute)
	if got := len(h.c.ops); got != 10 {
		t.Fatalf("%d operations left, want the 10 not cancelled", got)
	}
	if h.c.peaks.ops != 10 || h.c.peaks.execs != 10 || h.c.peaks.inflight != 10 {
		t.Errorf("peaks %+v: the maps were not made again", h.c.peaks)
	}
	for i := burst - 10; i < burst; i++ {
		name := fmt.Sprint("op", i)
		if _, ok := h.c.Operation(name); !ok || h.c.execs[h.c.ops[name].exec.id] == nil {
			t.Errorf("%s lost when the maps were made again", name)
		}
	}
}
