package scheduler

import (
	"fmt"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/api/workerpb"
)

// drain drains the worker id (it must exist) and collects what that sends.
func (h *harness) drain(id string) {
	h.t.Helper()
	if _, err := h.c.Drain(h.now, id); err != nil {
		h.t.Fatalf("Drain %s: %v", id, err)
	}
	h.collect()
}

// undrain undrains the worker id (it must exist) and collects what that sends.
func (h *harness) undrain(id string) {
	h.t.Helper()
	if _, err := h.c.Undrain(h.now, id); err != nil {
		h.t.Fatalf("Undrain %s: %v", id, err)
	}
	h.collect()
}

// loseWorker ends id's session as kill -9 does and lets reconnect_grace
// pass: the core forgets the worker.
func (h *harness) loseWorker(id string) {
	h.t.Helper()
	h.c.Disconnect(h.now, id, h.gens[id])
	h.collect()
	h.advance(h.cfg.ReconnectGrace)
	if _, known := h.c.workers[id]; known {
		h.t.Fatalf("worker %s still known past reconnect_grace", id)
	}
}

// An operator's drain belongs to the worker id until undrained: a drained
// worker lost past reconnect_grace that registers again is still drained.
// It came back undrained and took work, as its drain was forgotten with it.
func TestDrainHoldsWhenTheWorkerIsLostAndRegistersAgain(t *testing.T) {
	h := newHarness(t, nil)
	h.connect("w1", 1, nil)
	h.drain("w1")
	h.loseWorker("w1")

	from := len(h.sent)
	h.connect("w1", 1, nil)
	h.execute("op", "x", "", 0)
	if got := fmt.Sprint(h.kinds("w1", from)); got != "[drain]" {
		t.Fatalf("w1 registered again after it was lost: sent %s, want [drain] and no assignment", got)
	}
	if ws := h.c.Workers(); len(ws) != 1 || !ws[0].Draining {
		t.Fatalf("ListWorkers = %v, want w1 draining", ws)
	}

	// Undrain, by id, takes it back.
	from = len(h.sent)
	if n, err := h.c.Undrain(h.now, "w1"); err != nil || n != 1 {
		t.Fatalf("Undrain = %d, %v; want 1 running", n, err)
	}
	h.collect()
	if got := fmt.Sprint(h.kinds("w1", from)); got != "[undrain assignment]" {
		t.Fatalf("after undrain: %s, want [undrain assignment]", got)
	}
}

// A drained worker's id can be undrained while the worker is gone: it
// registers again undrained. A drain of it while gone is NOT_FOUND (no
// worker to report on; the drain already holds), and ids never
// registered are NOT_FOUND and kept nowhere.
func TestUndrainOfALostWorkerHoldsWhenItRegistersAgain(t *testing.T) {
	h := newHarness(t, nil)
	h.connect("w1", 1, nil)
	h.drain("w1")
	h.loseWorker("w1")

	if _, err := h.c.Drain(h.now, "w1"); status.Code(err) != codes.NotFound {
		t.Fatalf("draining lost w1 again: %v, want NOT_FOUND", err)
	}
	if n, err := h.c.Undrain(h.now, "w1"); err != nil || n != 0 {
		t.Fatalf("undraining lost w1 = %d, %v; want 0, nil", n, err)
	}
	h.collect()
	if fmt.Sprint(h.undrained) != "[w1]" {
		t.Fatalf("undrained = %v, want [w1]", h.undrained)
	}
	from := len(h.sent)
	h.connect("w1", 1, nil)
	h.execute("op", "x", "", 0)
	if got := fmt.Sprint(h.kinds("w1", from)); got != "[assignment]" {
		t.Fatalf("w1 registered again after its undrain: sent %s, want [assignment]", got)
	}

	if _, err := h.c.Drain(h.now, "nobody"); status.Code(err) != codes.NotFound {
		t.Fatalf("draining an unknown worker: %v, want NOT_FOUND", err)
	}
	if _, err := h.c.Undrain(h.now, "nobody"); status.Code(err) != codes.NotFound {
		t.Fatalf("undraining an unknown worker: %v, want NOT_FOUND", err)
	}
	if len(h.c.drained) != 0 {
		t.Fatalf("drained ids = %v, want none", h.c.drained)
	}
}

// A draining worker that is lost is reported lost, with the actions it
// held requeued, not idle: whoever waits for the drain must not be told
// the worker can be stopped with nothing lost.
func TestLosingADrainingWorkerIsNotReportedIdle(t *testing.T) {
	h := newHarness(t, nil)
	h.connect("w1", 2, nil)
	h.execute("op1", "1", "", 0)
	h.execute("op2", "2", "", 0)
	h.assignments()
	h.drain("w1")
	h.loseWorker("w1")
	if len(h.idle) != 0 {
		t.Fatalf("idle = %v, want none: w1 was lost with its actions", h.idle)
	}
	if fmt.Sprint(h.lost) != "[{w1 2}]" {
		t.Fatalf("lost = %v, want [{w1 2}] (both actions requeued)", h.lost)
	}
}

// DrainWorker with wait, over gRPC as `paddock scheduler drain --wait`
// calls it, on a worker killed while it runs an action: past
// reconnect_grace the call fails with ABORTED saying the worker was lost
// and its action requeued. It answered idle, and the CLI printed
// "drained and idle" with exit code 0.
func TestDrainWaitOnALostWorkerSaysItWasLost(t *testing.T) {
	clock := newFakeClock()
	cfg := testConfig()
	cfg.TickInterval = time.Hour // only the test ticks
	f := startFarm(t, cfg, "", nil, nil, clock)
	s, ctx := f.s, ctxTimeout(t)
	sess, err := s.connectWorker(ctx, &workerpb.Register{WorkerId: "w1", Concurrency: 1, Platform: []*workerpb.Property{linux}})
	if err != nil {
		t.Fatal(err)
	}
	sub := benchSubmission(1)
	s.mu.Lock()
	if _, err := s.core.Execute(clock.Now(), sub); err != nil {
		t.Fatal(err)
	}
	s.apply()
	s.mu.Unlock()

	type drained struct {
		resp *workerpb.DrainWorkerResponse
		err  error
	}
	done := make(chan drained, 1)
	go func() {
		resp, err := f.admin.DrainWorker(ctx, &workerpb.DrainWorkerRequest{WorkerId: "w1", Wait: true})
		done <- drained{resp, err}
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		s.mu.Lock()
		waiting := len(s.drainWaiters["w1"]) == 1
		s.mu.Unlock()
		if waiting {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("DrainWorker(wait) did not start waiting")
		}
	}

	sess.close() // kill -9: the stream ends
	clock.Advance(cfg.ReconnectGrace)
	s.Tick()

	got := <-done
	st := status.Convert(got.err)
	if got.resp != nil || st.Code() != codes.Aborted || !strings.Contains(st.Message(), "lost") || !strings.Contains(st.Message(), "1 of its actions were requeued") {
		t.Fatalf("DrainWorker(wait) on a lost worker = %v, %v; want ABORTED saying w1 was lost with 1 action requeued", got.resp, got.err)
	}
	s.mu.Lock()
	v, _ := s.core.Operation(sub.name)
	s.mu.Unlock()
	if v.stage != repb.ExecutionStage_QUEUED {
		t.Fatalf("the lost worker's action is %v, want QUEUED again", v.stage)
	}
}
