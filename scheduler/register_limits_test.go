package scheduler

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/api/workerpb"
)

// What a worker registers with is kept and written into logs and pages:
// past its bounds a Register is INVALID_ARGUMENT naming the field.
func TestRegisterIsBounded(t *testing.T) {
	s := newTestScheduler(t, testConfig(), nil)
	defer s.Close()
	many := func(n int) []*workerpb.Property {
		var ps []*workerpb.Property
		for i := range n {
			ps = append(ps, &workerpb.Property{Name: fmt.Sprint("p", i), Value: "v"})
		}
		return ps
	}
	for field, reg := range map[string]*workerpb.Register{
		"register.worker_id":                   {WorkerId: strings.Repeat("w", workerpb.MaxWorkerIDBytes+1), Concurrency: 1},
		"register.worker_id: \"..\"":           {WorkerId: "..", Concurrency: 1},
		"register.worker_id: contains control": {WorkerId: "w\n1", Concurrency: 1},
		"register.platform":                    {WorkerId: "w", Concurrency: 1, Platform: many(workerpb.MaxRegisterProperties + 1)},
		"register.platform[0]":                 {WorkerId: "w", Concurrency: 1, Platform: []*workerpb.Property{{Name: "Pool", Value: strings.Repeat("x", workerpb.MaxRegisterStringBytes)}}},
		"register.instance_names[0]":           {WorkerId: "w", Concurrency: 1, InstanceNames: []string{strings.Repeat("i", workerpb.MaxRegisterStringBytes+1)}},
	} {
		_, err := s.connectWorker(context.Background(), reg)
		if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), field) {
			t.Errorf("%s: %v, want INVALID_ARGUMENT naming it", field, err)
		}
	}
	sess, err := s.connectWorker(context.Background(), &workerpb.Register{WorkerId: "w", Concurrency: 1,
		Paused: true, PauseReason: strings.Repeat("é", maxPauseReasonBytes)})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.close()
	s.mu.Lock()
	why := s.core.workers["w"].pauseReason
	s.mu.Unlock()
	if len(why) > maxPauseReasonBytes+len("…") || !strings.HasSuffix(why, "é…") {
		t.Fatalf("pause reason of %d bytes kept, want it cut to %d at a character", len(why), maxPauseReasonBytes)
	}
}

// A worker that pauses and resumes at every heartbeat is logged once a
// minute, the next line counting the flips passed over; the pause itself
// takes effect every time.
func TestPauseFlipsAreLoggedAtMostOnceAMinute(t *testing.T) {
	h := newHarness(t, nil)
	h.connect("w", 1, nil)
	notes := 0
	for i := range 1000 {
		h.c.Pause(h.now, "w", h.gens["w"], i%2 == 0, "runner down")
		notes += len(h.c.takeEffects().notes)
		if h.c.workers["w"].paused != (i%2 == 0) {
			t.Fatalf("flip %d did not take effect", i)
		}
		h.now = h.now.Add(time.Millisecond)
	}
	if notes != 1 {
		t.Fatalf("%d notes for 1000 flips within a second, want 1", notes)
	}
	// A minute on, the state the flips left is logged even if the worker
	// flips no more: the log's last word on it is true.
	h.now = h.now.Add(pauseNoteInterval)
	h.c.Heartbeat(h.now, "w", h.gens["w"])
	h.c.Tick(h.now)
	fx := h.c.takeEffects()
	if len(fx.notes) != 1 || !strings.Contains(fx.notes[0], `"w" resumed`) || !strings.Contains(fx.notes[0], "after 999 pauses and resumes not logged") {
		t.Fatalf("notes a minute later: %q, want the resume, counting the 999 flips passed over", fx.notes)
	}
}
