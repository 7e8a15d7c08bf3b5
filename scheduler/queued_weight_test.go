package scheduler

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/auth"
)

// heavySpec is a spec whose platform and RequestMetadata take n bytes.
func heavySpec(n int) actionSpec {
	return actionSpec{platform: []*workerpb.Property{{Name: "Pool", Value: strings.Repeat("p", n/2)}}, requestMetadata: make([]byte, n-n/2-len("Pool"))}
}

// TestHeavyQueuedActionsCountForMore: an action whose platform and
// RequestMetadata take more than a KiB counts against max_queued and
// max_queued_per_instance as one more action for each further 384
// bytes, which is what it costs the scheduler; Bazel's small ones count
// one each, and the count goes back down as they leave the queue.
// Counted one each, 2,000 actions of 71 KB took `paddock up` to 1.2 GB.
func TestHeavyQueuedActionsCountForMore(t *testing.T) {
	if w := specWeight(heavySpec(1 << 10)); w != 1 {
		t.Fatalf("1 KiB of platform and metadata weighs %d, want 1", w)
	}
	if w := specWeight(heavySpec(71_000)); w != 1+(71_000-1024)/384 {
		t.Fatalf("71 KB weighs %d, want %d", w, 1+(71_000-1024)/384)
	}

	h := newHarness(t, func(c *Config) { c.MaxQueuedPerInstance = 10 })
	h.c.limits = map[string]auth.Limits{"team-a": {MaxQueued: 10}}
	for _, owner := range []string{"", "team-a"} {
		t.Run(fmt.Sprintf("tenant %q", owner), func(t *testing.T) {
			sub := func(name string, bytes int) error {
				_, err := h.c.Execute(h.now, submission{name: owner + name, instance: owner + "i", owner: owner,
					action: actionDigest(owner + name), cacheable: true, spec: heavySpec(bytes)})
				return err
			}
			// 1 + 3 + 3 + 3 = 10: full.
			for i, n := range []int{100, 2_000, 2_000, 2_000} {
				if err := sub(fmt.Sprint("a", i), n); err != nil {
					t.Fatalf("action %d (%d bytes): %v", i, n, err)
				}
			}
			err := sub("small", 100)
			if status.Code(err) != codes.ResourceExhausted {
				t.Fatalf("an 11th unit: %v, want RESOURCE_EXHAUSTED", err)
			}
			if err := h.c.Cancel(h.now, owner+"a1"); err != nil {
				t.Fatal(err)
			}
			if err := sub("small", 100); err != nil {
				t.Fatalf("after a weight-3 action left the queue: %v", err)
			}
			// The refusal says how much is queued and the bound, not
			// the bound as what is queued.
			err = sub("heavy", 2_000)
			if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "counts as 3") ||
				!strings.Contains(st.Message(), "has 8 queued actions") || !strings.Contains(st.Message(), "maximum of 10") && !strings.Contains(st.Message(), "max_queued of 10") {
				t.Fatalf("a weight-3 action with 2 units left: %v, want RESOURCE_EXHAUSTED saying what it counts as, the 8 queued and the bound of 10", err)
			}
		})
	}
}

// TestAnActionHeavierThanTheBoundIsQueuedAlone: an action heavier than
// max_queued itself is refused only while others are queued, not for
// ever.
func TestAnActionHeavierThanTheBoundIsQueuedAlone(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxQueuedPerInstance = 5 })
	heavy := submission{name: "heavy", action: actionDigest("heavy"), cacheable: true, spec: heavySpec(60_000)}
	h.execute("small", "small", "", 0)
	if _, err := h.c.Execute(h.now, heavy); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a heavy action behind another: %v, want RESOURCE_EXHAUSTED", err)
	}
	if err := h.c.Cancel(h.now, "small"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.c.Execute(h.now, heavy); err != nil {
		t.Fatalf("a heavy action alone: %v", err)
	}
	if got := h.c.queuedPerInstance[""]; got != specWeight(heavy.spec) {
		t.Fatalf("queued count %d, want the action's weight %d", got, specWeight(heavy.spec))
	}
}
