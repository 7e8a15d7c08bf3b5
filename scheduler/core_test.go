package scheduler

import (
	"fmt"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/clock"
)

// fakeClock is a Clock tests move by hand.
// fakeClock is the shared fake clock, starting at a fixed date.
type fakeClock = clock.Fake

func newFakeClock() *fakeClock { return clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) }

// harness drives a core with a fake time and collects its effects.
type harness struct {
	t         *testing.T
	c         *core
	now       time.Time
	gens      map[string]uint64
	sent      []workerMessage // every message sent to a worker, in order
	idle      []string
	lost      []workerLoss
	undrained []string
	hungUp    []string
	taken     int // sent[:taken] were returned by assignments()
	cfg       Config
	records   []record // every record the core wrote, in order
}

func newHarness(t *testing.T, mod func(*Config)) *harness {
	cfg := DefaultConfig()
	cfg.LeaseDuration = 30 * time.Second
	cfg.ReconnectGrace = 10 * time.Second
	cfg.MaxRetries = 2
	if mod != nil {
		mod(&cfg)
	}
	return &harness{t: t, c: newCore(cfg), cfg: cfg, now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), gens: map[string]uint64{}}
}

// restart replaces the core by one replayed from its records, as a
// scheduler restarted on its journal, and forgets the messages sent.
func (h *harness) restart() {
	h.t.Helper()
	h.collect()
	h.c = replayed(h.t, h.cfg, nil, nil, h.records)
	h.c.recovered(h.now)
	h.sent, h.taken = nil, 0
}

func (h *harness) collect() {
	fx := h.c.takeEffects()
	h.records = append(h.records, fx.records...)
	h.sent = append(h.sent, fx.dispatch...)
	h.idle = append(h.idle, fx.idle...)
	h.lost = append(h.lost, fx.lost...)
	h.undrained = append(h.undrained, fx.undrained...)
	for _, hu := range fx.hangUp {
		h.hungUp = append(h.hungUp, hu.worker)
	}
}

func actionDigest(key string) digest.Digest {
	return digest.FromBytes(repb.DigestFunction_SHA256, []byte(key))
}

// execute submits an action; key identifies the action (equal keys
// deduplicate), name the operation.
func (h *harness) execute(name, key, invocation string, priority int32, routing ...*workerpb.Property) *operation {
	h.t.Helper()
	qk := ""
	for _, p := range routing {
		qk += "\x00" + p.Name + "=" + p.Value
	}
	op, err := h.c.Execute(h.now, submission{
		name: name, action: actionDigest(key), cacheable: true, priority: priority,
		invocation: invocation, queueKey: qk, routing: routing,
	})
	if err != nil {
		h.t.Fatalf("execute %s: %v", name, err)
	}
	h.collect()
	return op
}

func (h *harness) connect(id string, capacity int, running []*workerpb.InHand, platform ...*workerpb.Property) {
	h.gens[id] = h.c.Connect(h.now, registration{id: id, capacity: capacity, running: running, platform: platform})
	h.collect()
}

func (h *harness) result(worker, name string, attempt int32, exitCode int32) {
	h.c.Result(h.now, worker, h.gens[worker], name, attempt, &repb.ExecuteResponse{Result: &repb.ActionResult{ExitCode: exitCode}})
	h.collect()
}

func (h *harness) advance(d time.Duration) {
	h.now = h.now.Add(d)
	h.c.Tick(h.now)
	h.collect()
}

func (h *harness) heartbeat(worker string) {
	h.c.Heartbeat(h.now, worker, h.gens[worker])
	h.collect()
}

type sentAssignment struct {
	worker  string
	name    string
	attempt int32
}

// assignments returns the assignments sent since the last call.
func (h *harness) assignments() []sentAssignment {
	var out []sentAssignment
	for _, m := range h.sent[h.taken:] {
		if a := m.msg.GetAssignment(); a != nil {
			out = append(out, sentAssignment{m.worker, a.OperationName, a.Attempt})
		}
	}
	h.taken = len(h.sent)
	return out
}

func (h *harness) cancels(worker string) []string {
	var out []string
	for _, m := range h.sent {
		if c := m.msg.GetCancel(); c != nil && m.worker == worker {
			out = append(out, c.OperationName)
		}
	}
	return out
}

func statusCode(op *operation) code.Code {
	return code.Code(op.response.GetStatus().GetCode())
}

func TestLeaseExpiryRequeuesToAnotherWorkerThenSucceeds(t *testing.T) {
	h := newHarness(t, nil)
	h.connect("a", 1, nil)
	op := h.execute("op1", "x", "", 0)
	if got := h.assignments(); len(got) != 1 || got[0] != (sentAssignment{"a", "op1", 1}) {
		t.Fatalf("first dispatch = %v, want op1 attempt 1 on a", got)
	}
	h.connect("b", 1, nil)
	h.advance(20 * time.Second)
	h.heartbeat("b")
	if got := h.assignments(); len(got) != 0 {
		t.Fatalf("dispatched %v before a's lease expired", got)
	}
	h.advance(10 * time.Second) // a silent for 30s: lease gone
	if got := h.assignments(); len(got) != 1 || got[0] != (sentAssignment{"b", "op1", 2}) {
		t.Fatalf("after lease expiry = %v, want op1 attempt 2 on b", got)
	}
	// A late result from a is ignored: it no longer holds the action.
	h.result("a", "op1", 1, 99)
	if op.done {
		t.Fatal("stale result from the lost worker completed the operation")
	}
	h.result("b", "op1", 2, 0)
	if !op.done || statusCode(op) != code.Code_OK || op.response.Result.ExitCode != 0 || op.worker != "b" {
		t.Fatalf("op = done %v status %v worker %q, want done OK on b", op.done, op.response.GetStatus(), op.worker)
	}
}

func TestRetryCapCompletesWithUnavailable(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxRetries = 2 })
	op := h.execute("op1", "killer", "", 0)
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("w%d", i)
		h.connect(id, 1, nil)
		if got := h.assignments(); len(got) != 1 || got[0] != (sentAssignment{id, "op1", int32(i)}) {
			t.Fatalf("dispatch %d = %v", i, got)
		}
		h.advance(31 * time.Second) // the action kills its worker
	}
	if !op.done || statusCode(op) != code.Code_UNAVAILABLE {
		t.Fatalf("after 3 lost workers: done %v status %v, want UNAVAILABLE", op.done, op.response.GetStatus())
	}
	h.connect("w4", 1, nil)
	if got := h.assignments(); len(got) != 0 {
		t.Fatalf("action retried beyond the cap: %v", got)
	}
}

// A worker that reports UNAVAILABLE without a result (its runner died) has
// the action retried elsewhere, counting retries like a lost worker.
func TestRetryableWorkerFailureIsRetriedUpToTheCap(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxRetries = 1 })
	op := h.execute("op1", "flaky", "", 0)
	unavailable := &repb.ExecuteResponse{Status: &rpcstatus.Status{Code: int32(code.Code_UNAVAILABLE), Message: "runner died"}}
	h.connect("a", 1, nil)
	h.assignments()
	h.c.Result(h.now, "a", h.gens["a"], "op1", 1, unavailable)
	h.collect()
	if op.done {
		t.Fatal("a retryable failure completed the operation")
	}
	if got := h.assignments(); len(got) != 1 || got[0] != (sentAssignment{"a", "op1", 2}) {
		t.Fatalf("retry dispatch = %v, want attempt 2", got)
	}
	h.c.Result(h.now, "a", h.gens["a"], "op1", 2, unavailable)
	h.collect()
	if !op.done || statusCode(op) != code.Code_UNAVAILABLE {
		t.Fatalf("after the cap: done %v status %v, want UNAVAILABLE", op.done, op.response.GetStatus())
	}
	// UNAVAILABLE with a result is the action's own outcome: not retried.
	op2 := h.execute("op2", "other", "", 0)
	h.assignments()
	h.c.Result(h.now, "a", h.gens["a"], "op2", 1, &repb.ExecuteResponse{Status: unavailable.Status, Result: &repb.ActionResult{ExitCode: 1}})
	h.collect()
	if !op2.done {
		t.Fatal("a response with a result was retried")
	}
}

func TestDedupSharesOneExecution(t *testing.T) {
	h := newHarness(t, nil)
	var ops []*operation
	for i := 0; i < 50; i++ {
		ops = append(ops, h.execute(fmt.Sprintf("op%02d", i), "same", fmt.Sprintf("inv%d", i%3), 0))
	}
	h.connect("a", 4, nil)
	got := h.assignments()
	if len(got) != 1 {
		t.Fatalf("50 identical actions made %d dispatches, want 1", len(got))
	}
	h.result("a", got[0].name, 1, 7)
	for _, op := range ops {
		if !op.done || op.response.GetResult().GetExitCode() != 7 {
			t.Fatalf("%s: done %v result %v, want the shared result", op.name, op.done, op.response.GetResult())
		}
	}
}

func TestCancelOneDedupWaiterKeepsExecutionForOthers(t *testing.T) {
	h := newHarness(t, nil)
	h.connect("a", 1, nil)
	op1 := h.execute("op1", "same", "i1", 0)
	op2 := h.execute("op2", "same", "i2", 0)
	if got := h.assignments(); len(got) != 1 {
		t.Fatalf("dispatches = %v, want one", got)
	}
	if err := h.c.Cancel(h.now, "op1"); err != nil {
		t.Fatal(err)
	}
	h.collect()
	if !op1.done || statusCode(op1) != code.Code_CANCELLED {
		t.Fatalf("op1: done %v status %v, want CANCELLED", op1.done, op1.response.GetStatus())
	}
	if c := h.cancels("a"); len(c) != 0 {
		t.Fatalf("worker told to cancel %v although op2 still waits", c)
	}
	h.result("a", "op1", 1, 0)
	if !op2.done || statusCode(op2) != code.Code_OK {
		t.Fatalf("op2: done %v status %v, want OK", op2.done, op2.response.GetStatus())
	}
	if op1.response.GetStatus().GetCode() != int32(code.Code_CANCELLED) {
		t.Fatal("the shared result overwrote the cancelled operation")
	}
}

func TestCancelRunningActionKillsItOnItsWorker(t *testing.T) {
	h := newHarness(t, nil)
	h.connect("a", 1, nil)
	op := h.execute("op1", "x", "", 0)
	next := h.execute("op2", "y", "", 0)
	h.assignments()
	if err := h.c.Cancel(h.now, "op1"); err != nil {
		t.Fatal(err)
	}
	h.collect()
	if !op.done || statusCode(op) != code.Code_CANCELLED {
		t.Fatalf("op1: done %v status %v, want CANCELLED", op.done, op.response.GetStatus())
	}
	if c := h.cancels("a"); len(c) != 1 || c[0] != "op1" {
		t.Fatalf("cancels sent to a = %v, want [op1]", c)
	}
	if got := h.assignments(); len(got) != 0 {
		t.Fatalf("slot reused before the worker confirmed the kill: %v", got)
	}
	// The worker reports the killed action; its slot goes to op2.
	h.result("a", "op1", 1, 137)
	if statusCode(op) != code.Code_CANCELLED {
		t.Fatal("the killed action's result replaced CANCELLED")
	}
	if got := h.assignments(); len(got) != 1 || got[0].name != "op2" || next.done {
		t.Fatalf("after the kill: %v, want op2 dispatched", got)
	}
	// A new identical Execute starts a fresh execution.
	h.execute("op3", "x", "", 0)
	if _, ok := h.c.inflight[dedupKey{"", "", actionDigest("x")}]; !ok {
		t.Fatal("new execute of the cancelled action was not queued")
	}
}

func TestCancelQueuedActionLeavesQueue(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxQueuedPerInstance = 1 })
	h.execute("op1", "x", "", 0)
	if _, err := h.c.Execute(h.now, submission{name: "op2", action: actionDigest("y"), cacheable: true}); err == nil {
		t.Fatal("second queued action accepted beyond max_queued_per_instance 1")
	}
	if err := h.c.Cancel(h.now, "op1"); err != nil {
		t.Fatal(err)
	}
	h.execute("op3", "y", "", 0) // room again
	h.connect("a", 2, nil)
	if got := h.assignments(); len(got) != 1 || got[0].name != "op3" {
		t.Fatalf("dispatches = %v, want only op3", got)
	}
}

// A tenant may name any number of instances: without a max_queued of its
// own, max_queued_per_instance bounds its queued actions in all of them
// together, and a merged Execute is never refused.
func TestQueuedActionsAreBoundedAcrossInstances(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxQueuedPerInstance = 2 })
	for i, inst := range []string{"a", "b"} {
		if _, err := h.c.Execute(h.now, submission{name: fmt.Sprint("op", i), instance: inst, action: actionDigest(inst), cacheable: true}); err != nil {
			t.Fatalf("queued action %d: %v", i, err)
		}
	}
	_, err := h.c.Execute(h.now, submission{name: "op2", instance: "c", action: actionDigest("c"), cacheable: true})
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "in all its instance names") {
		t.Fatalf("a third queued action in a third instance: %v; want RESOURCE_EXHAUSTED", err)
	}
	if _, err := h.c.Execute(h.now, submission{name: "op3", instance: "a", action: actionDigest("a"), cacheable: true}); err != nil {
		t.Fatalf("an Execute merged into a queued action: %v", err)
	}
	// Another tenant has a bound of its own.
	if _, err := h.c.Execute(h.now, submission{name: "op4", instance: "c", owner: "team-b", action: actionDigest("c"), cacheable: true}); err != nil {
		t.Fatalf("another tenant's action: %v", err)
	}
}

func TestFairnessBetweenInvocations(t *testing.T) {
	h := newHarness(t, nil)
	for i := 0; i < 1000; i++ {
		h.execute(fmt.Sprintf("a%04d", i), fmt.Sprintf("a%d", i), "big", 0)
	}
	for i := 0; i < 10; i++ {
		h.execute(fmt.Sprintf("b%04d", i), fmt.Sprintf("b%d", i), "small", 0)
	}
	h.connect("w", 1, nil)
	var order []string
	for len(order) < 1010 {
		got := h.assignments()
		if len(got) != 1 {
			t.Fatalf("after %d dispatches got %v", len(order), got)
		}
		order = append(order, got[0].name)
		h.result("w", got[0].name, 1, 0)
	}
	lastB := -1
	for i, n := range order {
		if n[0] == 'b' {
			lastB = i
		}
	}
	// Two invocations take turns: the small one's 10 actions are all
	// dispatched within the first 20, not after the big one's 1,000.
	if lastB >= 20 {
		t.Fatalf("small invocation's last action was dispatch #%d, want < 20 (order starts %v)", lastB, order[:25])
	}
}

func TestPriorityOrdering(t *testing.T) {
	h := newHarness(t, nil)
	h.execute("p5a", "1", "i", 5)
	h.execute("p0", "2", "i", 0)
	h.execute("p5b", "3", "j", 5)
	h.execute("pm1", "4", "j", -1)
	h.execute("p10", "5", "i", 10)
	h.connect("w", 1, nil)
	var order []string
	for len(order) < 5 {
		got := h.assignments()
		order = append(order, got[0].name)
		h.result("w", got[0].name, 1, 0)
	}
	want := []string{"pm1", "p0", "p5a", "p5b", "p10"}
	if fmt.Sprint(order) != fmt.Sprint(want) {
		t.Fatalf("order = %v, want %v (lower number first)", order, want)
	}
}

func TestDrainStopsWorkAndReportsIdle(t *testing.T) {
	h := newHarness(t, nil)
	h.connect("w", 2, nil)
	for i := 0; i < 4; i++ {
		h.execute(fmt.Sprintf("op%d", i), fmt.Sprint(i), "", 0)
	}
	if got := h.assignments(); len(got) != 2 {
		t.Fatalf("dispatches = %v, want 2 (concurrency)", got)
	}
	n, err := h.c.Drain(h.now, "w")
	h.collect()
	if err != nil || n != 2 {
		t.Fatalf("Drain = %d, %v; want 2 running", n, err)
	}
	h.result("w", "op0", 1, 0)
	if got := h.assignments(); len(got) != 0 {
		t.Fatalf("draining worker got %v", got)
	}
	if len(h.idle) != 0 {
		t.Fatal("reported idle with one action still running")
	}
	h.result("w", "op1", 1, 0)
	if len(h.idle) != 1 || h.idle[0] != "w" {
		t.Fatalf("idle = %v, want [w]", h.idle)
	}
	h.connect("v", 1, nil)
	if got := h.assignments(); len(got) != 1 || got[0].worker != "v" {
		t.Fatalf("queued work did not go to another worker: %v", got)
	}
	if _, err := h.c.Drain(h.now, "nobody"); err == nil {
		t.Fatal("draining an unknown worker succeeded")
	}
}

// kinds lists the kinds of the messages sent to worker since message from.
func (h *harness) kinds(worker string, from int) []string {
	var out []string
	for _, m := range h.sent[from:] {
		if m.worker != worker {
			continue
		}
		switch m.msg.Kind.(type) {
		case *workerpb.SchedulerMessage_Assignment:
			out = append(out, "assignment")
		case *workerpb.SchedulerMessage_Drain:
			out = append(out, "drain")
		case *workerpb.SchedulerMessage_Undrain:
			out = append(out, "undrain")
		case *workerpb.SchedulerMessage_Cancel:
			out = append(out, "cancel")
		}
	}
	return out
}

func TestUndrainResumesWork(t *testing.T) {
	h := newHarness(t, nil)
	h.connect("w", 1, nil)
	for i := 0; i < 3; i++ {
		h.execute(fmt.Sprintf("op%d", i), fmt.Sprint(i), "", 0)
	}
	h.assignments()
	h.drain("w")
	h.result("w", "op0", 1, 0)
	if got := h.assignments(); len(got) != 0 {
		t.Fatalf("draining worker got %v", got)
	}
	h.advance(10 * time.Second) // drained for a while; still known
	h.heartbeat("w")

	from := len(h.sent)
	n, err := h.c.Undrain(h.now, "w")
	h.collect()
	if err != nil || n != 1 {
		t.Fatalf("Undrain = %d, %v; want 1 running (the next action went out at once)", n, err)
	}
	// The worker hears Undrain before its next assignment.
	if got := fmt.Sprint(h.kinds("w", from)); got != "[undrain assignment]" {
		t.Fatalf("messages after undrain = %s, want [undrain assignment]", got)
	}
	if fmt.Sprint(h.undrained) != "[w]" {
		t.Fatalf("undrained = %v, want [w] (drain waiters must stop waiting)", h.undrained)
	}
	if ws := h.c.Workers(); ws[0].Draining {
		t.Fatal("ListWorkers still says draining")
	}
	if got := h.assignments(); len(got) != 1 || got[0].name != "op1" {
		t.Fatalf("after undrain: %v, want op1", got)
	}
	// Undraining a worker that is not drained changes nothing.
	from = len(h.sent)
	if n, err := h.c.Undrain(h.now, "w"); err != nil || n != 1 {
		t.Fatalf("second Undrain = %d, %v; want 1 running", n, err)
	}
	h.collect()
	if got := h.kinds("w", from); len(got) != 0 || len(h.undrained) != 1 {
		t.Fatalf("undraining an undrained worker sent %v, undrained %v", got, h.undrained)
	}
	if _, err := h.c.Undrain(h.now, "nobody"); status.Code(err) != codes.NotFound {
		t.Fatalf("undraining an unknown worker: %v, want NOT_FOUND", err)
	}
}

// A drain undone while the worker is away is not replayed to it when it
// comes back; a leaving worker stays out of work whatever an operator
// undoes.
func TestUndrainWhileDisconnectedOrLeaving(t *testing.T) {
	h := newHarness(t, nil)
	h.connect("w", 1, nil)
	if _, err := h.c.Drain(h.now, "w"); err != nil {
		t.Fatal(err)
	}
	h.c.Disconnect(h.now, "w", h.gens["w"])
	h.collect()
	from := len(h.sent)
	h.undrain("w")
	if got := h.kinds("w", from); len(got) != 0 {
		t.Fatalf("sent %v to a disconnected worker", got)
	}
	h.advance(5 * time.Second)
	h.connect("w", 1, nil)
	h.execute("op", "x", "", 0)
	if got := fmt.Sprint(h.kinds("w", from)); got != "[assignment]" {
		t.Fatalf("after reconnecting undrained: %s, want [assignment] and no drain", got)
	}

	h.connect("v", 1, nil)
	if _, err := h.c.Drain(h.now, "v"); err != nil {
		t.Fatal(err)
	}
	h.c.Leave(h.now, "v", h.gens["v"])
	h.collect()
	from = len(h.sent)
	h.undrain("v")
	h.execute("op2", "y", "", 0)
	if got := h.kinds("v", from); len(got) != 0 {
		t.Fatalf("leaving worker got %v after an undrain", got)
	}
}

func TestReconnectReconcilesActionsInHand(t *testing.T) {
	h := newHarness(t, nil)
	h.connect("w", 2, nil)
	kept := h.execute("kept", "k", "", 0)
	dropped := h.execute("dropped", "d", "", 0)
	h.assignments()
	h.c.Disconnect(h.now, "w", h.gens["w"])
	h.advance(5 * time.Second) // within the reconnect grace
	// The worker comes back holding "kept" and an action this scheduler
	// never gave it; it lost "dropped".
	h.connect("w", 2, []*workerpb.InHand{{OperationName: "kept", Attempt: 1}, {OperationName: "stranger", Attempt: 1}})
	if c := h.cancels("w"); len(c) != 1 || c[0] != "stranger" {
		t.Fatalf("cancels = %v, want [stranger]", c)
	}
	got := h.assignments()
	if len(got) != 1 || got[0] != (sentAssignment{"w", "dropped", 2}) {
		t.Fatalf("reassigned = %v, want dropped attempt 2", got)
	}
	h.result("w", "kept", 1, 0)
	h.result("w", "dropped", 2, 0)
	if !kept.done || !dropped.done {
		t.Fatal("actions did not complete after the reconnect")
	}
	// A stale session cannot act for the new one.
	h.c.Result(h.now, "w", h.gens["w"]-1, "x", 1, nil)
}

func TestRoutingPropertiesSelectQueues(t *testing.T) {
	h := newHarness(t, nil)
	linux := &workerpb.Property{Name: "OSFamily", Value: "linux"}
	win := &workerpb.Property{Name: "OSFamily", Value: "windows"}
	h.execute("l", "l", "", 0, linux)
	h.execute("w", "w", "", 0, win)
	h.execute("any", "any", "", 0)
	h.connect("lin", 5, nil, linux, &workerpb.Property{Name: "Pool", Value: "default"})
	got := h.assignments()
	names := map[string]bool{}
	for _, a := range got {
		names[a.name] = true
	}
	if len(got) != 2 || !names["l"] || !names["any"] {
		t.Fatalf("linux worker got %v, want l and any", got)
	}
}

func TestCompletedOperationsExpireAfterRetention(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.CompletedRetention = time.Minute })
	h.connect("w", 1, nil)
	h.execute("op", "x", "", 0)
	h.result("w", "op", 1, 0)
	h.advance(59 * time.Second)
	h.heartbeat("w")
	if _, ok := h.c.Operation("op"); !ok {
		t.Fatal("completed operation forgotten before its retention")
	}
	h.advance(time.Second)
	if _, ok := h.c.Operation("op"); ok {
		t.Fatal("completed operation still known after its retention")
	}
}

func TestGiveBackRequeuesWithoutCountingARetry(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxRetries = 0 })
	h.connect("a", 1, nil)
	op := h.execute("op", "x", "", 0)
	h.assignments()
	h.c.GiveBack(h.now, "a", h.gens["a"], "op", 1)
	h.collect()
	got := h.assignments()
	if len(got) != 1 || got[0].attempt != 2 || op.done {
		t.Fatalf("after give-back: %v done=%v, want attempt 2 dispatched", got, op.done)
	}
}

func TestDoNotCacheActionsAreNotDeduplicated(t *testing.T) {
	h := newHarness(t, nil)
	for _, name := range []string{"op1", "op2"} {
		if _, err := h.c.Execute(h.now, submission{name: name, action: actionDigest("same"), cacheable: false}); err != nil {
			t.Fatal(err)
		}
		h.collect()
	}
	h.connect("w", 2, nil)
	if got := h.assignments(); len(got) != 2 {
		t.Fatalf("do_not_cache actions dispatched %v, want two separate executions", got)
	}
}

// newXOnAOrB connects two free workers, a and b, and executes action x,
// which goes to one of them: the dispatch it returns; the other is free.
func newXOnAOrB(t *testing.T) (*harness, sentAssignment) {
	t.Helper()
	h := newHarness(t, nil)
	h.connect("a", 1, nil)
	h.connect("b", 1, nil)
	h.execute("x", "x", "", 0)
	got := h.assignments()
	if len(got) != 1 {
		t.Fatalf("dispatches %v, want x on a or b", got)
	}
	return h, got[0]
}

func TestLostConnectionRequeuesAfterReconnectGrace(t *testing.T) {
	h, first := newXOnAOrB(t)
	h.c.Disconnect(h.now, first.worker, h.gens[first.worker])
	other := "a"
	if first.worker == "a" {
		other = "b"
	}
	h.advance(9 * time.Second)
	if got := h.assignments(); len(got) != 0 {
		t.Fatalf("requeued %v within the reconnect grace", got)
	}
	h.heartbeat(other)
	h.advance(time.Second)
	if got := h.assignments(); len(got) != 1 || got[0] != (sentAssignment{other, "x", 2}) {
		t.Fatalf("after the grace: %v, want x attempt 2 on %s (well before the 30s lease)", got, other)
	}
}

func TestDedupJoinerRaisesPriority(t *testing.T) {
	h := newHarness(t, nil)
	h.execute("low", "shared", "i", 10)
	h.execute("mid", "other", "i", 5)
	h.execute("urgent", "shared", "j", 0) // joins "low", more urgent
	h.connect("w", 1, nil)
	if got := h.assignments(); len(got) != 1 || got[0].name != "low" {
		t.Fatalf("first dispatch %v, want the shared execution (now priority 0)", got)
	}
}

func TestSilentButConnectedWorkerIsHungUp(t *testing.T) {
	h := newHarness(t, nil)
	h.connect("w", 1, nil)
	h.execute("op", "x", "", 0)
	h.assignments()
	h.advance(30 * time.Second) // connected, but no heartbeat
	if len(h.hungUp) != 1 || h.hungUp[0] != "w" {
		t.Fatalf("hung up %v, want [w] so it registers again", h.hungUp)
	}
	// It registers again still holding the action, which was requeued
	// meanwhile: told to cancel it, and given the action afresh.
	h.connect("w", 1, []*workerpb.InHand{{OperationName: "op", Attempt: 1}})
	if c := h.cancels("w"); len(c) != 1 {
		t.Fatalf("cancels %v, want the stale attempt cancelled", c)
	}
	if got := h.assignments(); len(got) != 1 || got[0].attempt != 2 {
		t.Fatalf("dispatch %v, want attempt 2", got)
	}
}

func TestOverdueExecutionCompletesWithDeadlineExceeded(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.TimeoutGrace = time.Minute })
	h.connect("w", 1, nil)
	op, err := h.c.Execute(h.now, submission{name: "op", action: actionDigest("slow"), cacheable: true, spec: actionSpec{timeout: 10 * time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	h.collect()
	h.execute("next", "n", "", 0)
	for elapsed := time.Duration(0); elapsed < 10*time.Minute; elapsed += 20 * time.Second {
		h.advance(20 * time.Second)
		h.heartbeat("w") // the worker is alive, but never reports
	}
	if op.done {
		t.Fatal("completed before timeout + grace")
	}
	for i := 0; i < 3; i++ {
		h.advance(20 * time.Second)
		h.heartbeat("w")
	}
	if !op.done || statusCode(op) != code.Code_DEADLINE_EXCEEDED {
		t.Fatalf("op: done %v status %v, want DEADLINE_EXCEEDED", op.done, op.response.GetStatus())
	}
	if c := h.cancels("w"); len(c) != 1 || c[0] != "op" {
		t.Fatalf("cancels %v, want [op]", c)
	}
	h.assignments()
	h.result("w", "op", 1, 0) // the kill is confirmed: the slot frees
	if got := h.assignments(); len(got) != 1 || got[0].name != "next" {
		t.Fatalf("after the kill: %v, want next", got)
	}
}

// Completed operations' responses are bounded together: past
// max_completed_bytes the oldest are forgotten before their retention is
// up, the newest is always kept, and each goes with a delete record, so a
// replay under another bound gives the same state.
func TestCompletedResponsesAreBounded(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxCompletedBytes = 2500 })
	big := func(i int) *repb.ExecuteResponse {
		return &repb.ExecuteResponse{CachedResult: true, Message: strings.Repeat(fmt.Sprint(i), 1000)}
	}
	for i := range 5 {
		h.c.AddCompleted(h.now, fmt.Sprint("op", i), "", "", actionDigest("x"), big(i))
		h.collect()
		h.now = h.now.Add(time.Second)
	}
	for i := range 5 {
		_, ok := h.c.Operation(fmt.Sprint("op", i))
		if want := i >= 3; ok != want {
			t.Errorf("op%d known: %v, want %v (two responses of about 1 KB fit in 2,500 bytes)", i, ok, want)
		}
	}
	// One response larger than the bound is kept, alone.
	h.c.AddCompleted(h.now, "huge", "", "", actionDigest("x"), &repb.ExecuteResponse{Message: strings.Repeat("h", 5000)})
	h.collect()
	if _, ok := h.c.Operation("huge"); !ok {
		t.Error("the newest completed operation was forgotten")
	}
	if _, ok := h.c.Operation("op4"); ok {
		t.Error("op4 is still known beside a response over the bound")
	}
	want := mustState(t, h.c)
	for _, bound := range []int64{2500, DefaultConfig().MaxCompletedBytes, 1} {
		cfg := h.cfg
		cfg.MaxCompletedBytes = bound
		if got := mustState(t, replayed(t, cfg, nil, nil, h.records)); !equalStates(got, want) {
			t.Fatalf("replay under max_completed_bytes %d gave another state:\n got %+v\nwant %+v", bound, got, want)
		}
	}
}

// TestLeavingIsAnsweredOnce: a session's Leaving is answered with one
// Drain, however often the worker repeats it. A worker that repeated it
// without reading its stream had a Drain queued for each, 500 MB in its
// outbox for 2.5 million.
func TestLeavingIsAnsweredOnce(t *testing.T) {
	h := newHarness(t, nil)
	h.connect("w", 1, nil)
	h.collect()
	from := len(h.sent)
	for range 1000 {
		h.c.Leave(h.now, "w", h.gens["w"])
	}
	h.collect()
	if got := fmt.Sprint(h.kinds("w", from)); got != "[drain]" {
		t.Fatalf("1000 Leavings were answered with %s, want one drain", got)
	}
}
