package scheduler

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/auth"
)

// scenario drives a core with random events (executes of two tenants with
// limits, with deduplication, skip_cache_lookup, priorities, invocations
// and two queues,
// cache hits, cancels, deletes,
// workers connecting with some of their actions, results, retryable
// failures, give-backs, disconnects, drains and undrains, time passing) and keeps every
// record it wrote, encoded and decoded as the journal would.
type scenario struct {
	t       *testing.T
	rng     *rand.Rand
	c       *core
	now     time.Time
	gens    map[string]uint64
	records []record
	n       int
	// refused counts Executes over tenant-1's max_queued; held counts
	// steps after which tenant-0 had actions queued at its max_running;
	// private counts skip_cache_lookup Executes that got an execution of
	// their own beside a running one.
	refused, held, private int
}

func (sc *scenario) take() {
	for _, r := range sc.c.takeEffects().records {
		b, err := encodeRecord(r)
		if err != nil {
			sc.t.Fatal(err)
		}
		back, err := decodeRecord(b)
		if err != nil {
			sc.t.Fatalf("decode record %+v: %v", r, err)
		}
		sc.records = append(sc.records, back)
	}
	checkTenantCounts(sc.t, sc.c)
	checkInflight(sc.t, sc.c)
	if t0 := sc.c.tenants["tenant-0"]; t0 != nil && t0.queued > 0 && t0.running >= 2 {
		sc.held++
	}
}

// scenarioLimits hold tenant-0 to 2 running actions and tenant-1 to 12
// queued, so the scenario meets both limits.
var scenarioLimits = map[string]auth.Limits{"tenant-0": {MaxRunning: 2}, "tenant-1": {MaxQueued: 12}}

// checkTenantCounts fails unless every tenant's queued and running counts
// are what its queues and the workers hold, and the operations by owner
// (ListOperations' index) are the operations.
func checkTenantCounts(t *testing.T, c *core) {
	t.Helper()
	checkOpIndex(t, c)
	queued, running := map[string]int{}, map[string]int{}
	for _, q := range c.queues {
		queued[q.tenant.name] += q.size
		if c.tenants[q.tenant.name] != q.tenant {
			t.Fatalf("queue %q: its tenant %q is not the core's", q.key, q.tenant.name)
		}
	}
	for _, w := range c.workers {
		for _, e := range w.running {
			running[e.queue.tenant.name]++
		}
	}
	waiting := map[string]int{}
	for _, op := range c.ops {
		if !op.done {
			waiting[op.owner]++
		}
	}
	var retainedBytes int64
	for _, tn := range c.tenants {
		retainedBytes += tn.retained.bytes
		var sum int64
		for _, op := range tn.retained.fifo {
			if !op.released {
				sum += op.respBytes
			}
		}
		if sum != tn.retained.bytes {
			t.Fatalf("tenant %q counts %d retained bytes; its retained operations carry %d", tn.name, tn.retained.bytes, sum)
		}
	}
	if retainedBytes != c.completedBytes {
		t.Fatalf("tenants' retained responses count %d bytes in all; the core counts %d", retainedBytes, c.completedBytes)
	}
	for name, tn := range c.tenants {
		if tn.waiting != waiting[name] {
			t.Fatalf("tenant %q counts %d operations not done; the core holds %d", name, tn.waiting, waiting[name])
		}
		if tn.queued != queued[name] || tn.running != running[name] {
			t.Fatalf("tenant %q counts %d queued, %d running; its queues and workers hold %d and %d",
				name, tn.queued, tn.running, queued[name], running[name])
		}
	}
}

var pool = &workerpb.Property{Name: "Pool", Value: "big"}

func (sc *scenario) step() {
	rng, c := sc.rng, sc.c
	workers := []string{"w1", "w2", "w3"}
	w := workers[rng.IntN(len(workers))]
	opName := func() string { return fmt.Sprintf("operations/%d", rng.IntN(sc.n+1)) }
	switch k := rng.IntN(100); {
	case k < 35:
		sc.execute()
	case k < 38:
		sc.n++
		c.AddCompleted(sc.now, fmt.Sprintf("operations/%d", sc.n), "", "tenant-b", actionDigest("hit"), &repb.ExecuteResponse{CachedResult: true})
	case k < 42:
		switch rng.IntN(3) {
		case 0:
			mayBeNotFound(sc.t, "Cancel", c.Cancel(sc.now, opName()))
		case 1:
			mayBeNotFound(sc.t, "Abandon", c.Abandon(sc.now, opName(), "abandoned: no client followed it"))
		default: // as journals written before recAbandon have it
			mayBeNotFound(sc.t, "CancelFor", c.CancelFor(sc.now, opName(), "abandoned: no client followed it"))
		}
	case k < 44:
		mayBeNotFound(sc.t, "Delete", c.Delete(sc.now, opName()))
	case k < 52:
		sc.connect(w)
	case k < 80:
		cw := c.workers[w]
		if cw == nil || len(cw.running) == 0 {
			return
		}
		running := sortedValues(cw.running)
		e := running[rng.IntN(len(running))]
		switch rng.IntN(6) {
		case 0:
			c.GiveBack(sc.now, w, sc.gens[w], e.id, e.attempt)
		case 1:
			c.Result(sc.now, w, sc.gens[w], e.id, e.attempt, &repb.ExecuteResponse{Status: &rpcstatus.Status{Code: 14, Message: "runner died"}})
		default:
			c.Result(sc.now, w, sc.gens[w], e.id, e.attempt, &repb.ExecuteResponse{Result: &repb.ActionResult{ExitCode: int32(rng.IntN(2))}})
		}
	case k < 84:
		c.Disconnect(sc.now, w, sc.gens[w])
	case k < 85:
		_, err := c.Drain(sc.now, w)
		mayBeNotFound(sc.t, "Drain "+w, err)
	case k < 86:
		_, err := c.Undrain(sc.now, w)
		mayBeNotFound(sc.t, "Undrain "+w, err)
	case k < 87:
		c.Leave(sc.now, w, sc.gens[w])
	default:
		for _, id := range workers {
			if rng.IntN(3) > 0 {
				c.Heartbeat(sc.now, id, sc.gens[id])
			}
		}
		sc.now = sc.now.Add(time.Duration(rng.IntN(8000)) * time.Millisecond)
		c.Tick(sc.now)
	}
	sc.take()
}

// mayBeNotFound fails the test on an error other than NOT_FOUND, which
// the random steps meet as they name operations and workers that may not
// exist (any more).
func mayBeNotFound(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil && status.Code(err) != codes.NotFound {
		t.Fatalf("%s: %v", what, err)
	}
}

// execute submits a random action: one of 40, so that equal ones
// deduplicate, some with skip_cache_lookup.
func (sc *scenario) execute() {
	rng, c := sc.rng, sc.c
	sc.n++
	sub := benchSubmission(rng.IntN(40)) // equal actions deduplicate
	sub.name = fmt.Sprintf("operations/%d", sc.n)
	sub.priority = int32(rng.IntN(3))
	sub.invocation = fmt.Sprint("inv", rng.IntN(4))
	sub.cacheable = rng.IntN(10) > 0
	sub.owner = fmt.Sprint("tenant-", rng.IntN(2))
	sub.skipCacheLookup = rng.IntN(4) == 0
	if rng.IntN(4) == 0 {
		sub.spec.timeout = 3 * time.Second // overdue soon
	}
	if rng.IntN(3) == 0 {
		sub.queueKey, sub.routing = "\x00Pool=big", []*workerpb.Property{pool}
	}
	if op, err := c.Execute(sc.now, sub); err != nil {
		sc.refused++
	} else if op.exec.private {
		sc.private++
	}
}

// connect registers worker w, holding some of what the core has on it
// (and perhaps a queued action whose dispatch a restart lost).
func (sc *scenario) connect(w string) {
	rng, c := sc.rng, sc.c
	var inHand []*workerpb.InHand
	if cw := c.workers[w]; cw != nil {
		for _, e := range sortedValues(cw.running) {
			switch rng.IntN(10) {
			case 0, 1:
			case 2:
				// Sent again before a restart that lost the
				// records: adopted in place.
				inHand = append(inHand, &workerpb.InHand{OperationName: e.id, Attempt: e.attempt + 1})
			case 3:
				// An attempt the core is past: cancelled, and
				// the core's attempt is requeued.
				inHand = append(inHand, &workerpb.InHand{OperationName: e.id, Attempt: e.attempt - 1})
			default:
				inHand = append(inHand, &workerpb.InHand{OperationName: e.id, Attempt: e.attempt})
			}
		}
	}
	if rng.IntN(3) == 0 {
		// A queued action this worker received before a restart
		// that lost its dispatch: adopted.
		for _, e := range sortedValues(c.execs) {
			if e.stage == repb.ExecutionStage_QUEUED && rng.IntN(4) == 0 {
				inHand = append(inHand, &workerpb.InHand{OperationName: e.id, Attempt: e.attempt + 1})
				break
			}
		}
	}
	platform := []*workerpb.Property{linux}
	if w != "w1" {
		platform = append(platform, pool)
	}
	sc.gens[w] = c.Connect(sc.now, registration{id: w, capacity: 1 + rng.IntN(3), running: inHand, platform: platform})
}

func replayed(t *testing.T, cfg Config, limits map[string]auth.Limits, snap *coreState, records []record) *core {
	t.Helper()
	c := newCoreWithLimits(cfg, limits)
	if snap != nil {
		if err := c.restore(snap); err != nil {
			t.Fatalf("restore: %v", err)
		}
	}
	c.replaying = true
	for i, r := range records {
		if err := c.replay(r); err != nil {
			t.Fatalf("replay record %d (kind %d, %s): %v", i, r.kind, r.name, err)
		}
		c.takeEffects()
	}
	c.replaying = false
	checkTenantCounts(t, c)
	checkInflight(t, c)
	return c
}

func mustState(t *testing.T, c *core) *coreState {
	t.Helper()
	st, err := c.state()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// scenarioConfig is the config random scenarios run under: short
// leases, graces and retention, so that every kind of record comes up.
func scenarioConfig() Config {
	cfg := DefaultConfig()
	cfg.LeaseDuration, cfg.ReconnectGrace, cfg.MaxRetries = 20*time.Second, 5*time.Second, 2
	cfg.CompletedRetention = 30 * time.Second
	cfg.TimeoutGrace = time.Second
	return cfg
}

// newScenario starts a random scenario on a fresh core with cfg, its
// steps drawn from seed and stream.
func newScenario(t *testing.T, seed, stream uint64, cfg Config) *scenario {
	return &scenario{t: t, rng: rand.New(rand.NewPCG(seed, stream)), c: newCoreWithLimits(cfg, scenarioLimits),
		now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), gens: map[string]uint64{}}
}

// Replaying the journal gives the core's state exactly, queue order,
// round-robin positions and tenants' turn included; so does a snapshot
// (through its encoding) followed by the records after it. The tenants'
// limits do not change what a replay gives: a restart under a policy with
// other limits replays the same journal.
func TestReplayRebuildsTheSameState(t *testing.T) {
	var refused, held, private int
	for seed := uint64(1); seed <= 30; seed++ {
		cfg := scenarioConfig()
		sc := newScenario(t, seed, 7, cfg)
		var snap *coreState
		snapAt := 0
		for i := 0; i < 600; i++ {
			sc.step()
			if i == 300 {
				st := mustState(t, sc.c)
				b, err := encodeState(st)
				if err != nil {
					t.Fatal(err)
				}
				if snap, err = decodeState(b); err != nil {
					t.Fatal(err)
				}
				snapAt = len(sc.records)
			}
		}
		want := mustState(t, sc.c)
		if len(want.Execs) == 0 && len(want.Ops) == 0 {
			t.Fatalf("seed %d: the scenario ended empty; it tests nothing", seed)
		}
		if len(want.Queues) < 2 || want.LastTenant == "" {
			t.Fatalf("seed %d: the scenario ended with %d queues and no tenant's turn; it tests no tenants", seed, len(want.Queues))
		}
		refused, held, private = refused+sc.refused, held+sc.held, private+sc.private
		for _, limits := range []map[string]auth.Limits{scenarioLimits, nil} {
			if got := mustState(t, replayed(t, cfg, limits, nil, sc.records)); !equalStates(got, want) {
				t.Fatalf("seed %d: replaying %d records gave another state:\n got %+v\nwant %+v", seed, len(sc.records), got, want)
			}
			if got := mustState(t, replayed(t, cfg, limits, snap, sc.records[snapAt:])); !equalStates(got, want) {
				t.Fatalf("seed %d: snapshot + %d records gave another state:\n got %+v\nwant %+v", seed, len(sc.records)-snapAt, got, want)
			}
		}
	}
	if refused == 0 || held == 0 || private == 0 {
		t.Fatalf("the scenarios refused %d Executes over max_queued, held tenant-0 at max_running after %d steps and ran %d skip_cache_lookup Executes apart; they should meet both limits and run some apart", refused, held, private)
	}
	t.Logf("%d Executes refused over max_queued; %d steps with tenant-0 held at max_running; %d skip_cache_lookup Executes run apart", refused, held, private)
}

// After recovery, queued executions dispatch in the order the live core
// would have used.
func TestRecoveredQueueDispatchesInTheSameOrder(t *testing.T) {
	cfg := DefaultConfig()
	live := &scenario{t: t, rng: rand.New(rand.NewPCG(9, 9)), c: newCore(cfg), now: time.Unix(1e9, 0), gens: map[string]uint64{}}
	for i := 0; i < 200; i++ {
		sub := benchSubmission(i)
		sub.priority = int32(i % 3)
		sub.invocation = fmt.Sprint("inv", i%5)
		if _, err := live.c.Execute(live.now, sub); err != nil {
			t.Fatal(err)
		}
		live.take()
	}
	order := func(c *core) []string {
		c.Connect(live.now, registration{id: "drain", capacity: 1000, platform: []*workerpb.Property{linux}})
		var names []string
		for _, m := range c.takeEffects().dispatch {
			if a := m.msg.GetAssignment(); a != nil {
				names = append(names, a.OperationName)
			}
		}
		return names
	}
	back := replayed(t, cfg, nil, nil, live.records)
	back.recovered(live.now)
	want, got := order(live.c), order(back)
	if len(want) != 200 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after recovery the queue dispatches\n%v\nwant\n%v", got, want)
	}
}

// A worker that registers holding the attempt after the last one the core
// knows of, for a queued action, received it from a scheduler that crashed
// before its dispatch record was written: it keeps running it.
func TestWorkerHoldingALostDispatchAdoptsIt(t *testing.T) {
	h := newHarness(t, nil)
	h.execute("op", "a", "", 0)
	h.restart()
	op := h.c.ops["op"]
	h.connect("w", 1, []*workerpb.InHand{{OperationName: "op", Attempt: 1}})
	if op.exec.stage != repb.ExecutionStage_EXECUTING || op.exec.worker.id != "w" || op.exec.attempt != 1 {
		t.Fatalf("execution %+v, want attempt 1 executing on w", op.exec)
	}
	if a := h.assignments(); len(a) != 0 {
		t.Fatalf("sent %v; the worker already holds it", a)
	}
	if c := h.cancels("w"); len(c) != 0 {
		t.Fatalf("cancelled %v", c)
	}
	h.result("w", "op", 1, 0)
	if !op.done {
		t.Fatal("the adopted action's result did not complete the operation")
	}
}

// A scheduler requeued an action its worker came back without and sent it
// to that same worker again, then died before either record was durable:
// the next scheduler finds the action running on that worker in the
// attempt before the one the worker holds. It adopts the worker's
// attempt; it neither keeps waiting for an attempt no one runs nor
// cancels the one that runs. The journal replays to the same state.
func TestRestoredWorkerHoldingTheNextAttemptKeepsIt(t *testing.T) {
	h := newHarness(t, nil)
	h.execute("op", "a", "", 0)
	h.connect("w", 1, nil)
	if a := h.assignments(); len(a) != 1 || a[0].attempt != 1 {
		t.Fatalf("assignments %v, want op attempt 1", a)
	}
	h.restart()
	h.connect("w", 1, []*workerpb.InHand{{OperationName: "op", Attempt: 2}})
	e := h.c.execs["op"]
	if e == nil || e.stage != repb.ExecutionStage_EXECUTING || e.worker.id != "w" || e.attempt != 2 {
		t.Fatalf("execution %+v, want attempt 2 executing on w", e)
	}
	if a, c := h.assignments(), h.cancels("w"); len(a) != 0 || len(c) != 0 {
		t.Fatalf("sent %v and cancelled %v; the worker holds attempt 2 and should keep it", a, c)
	}
	if !equalStates(mustState(t, replayed(t, h.cfg, nil, nil, h.records)), mustState(t, h.c)) {
		t.Fatal("the adoption does not replay to the same state")
	}
	h.result("w", "op", 2, 0)
	if op := h.c.ops["op"]; op == nil || !op.done {
		t.Fatal("the adopted attempt's result did not complete the operation")
	}
}

// A restored worker that holds an attempt other than the core's is told
// to cancel it, and the core's attempt, which no one runs, is requeued
// and sent again: the operation completes, and no slot stays taken.
func TestRestoredWorkerHoldingAnotherAttemptIsCancelledAndTheActionRunsAgain(t *testing.T) {
	for _, held := range []int32{0, 3} {
		h := newHarness(t, nil)
		h.execute("op", "a", "", 0)
		h.connect("w", 1, nil)
		h.assignments()
		h.restart()
		h.connect("w", 1, []*workerpb.InHand{{OperationName: "op", Attempt: held}})
		a, c := h.assignments(), h.cancels("w")
		if fmt.Sprint(c) != "[op]" || len(a) != 1 || a[0] != (sentAssignment{"w", "op", 2}) {
			t.Fatalf("holding attempt %d: cancelled %v and sent %v; want op cancelled and sent again as attempt 2", held, c, a)
		}
		h.result("w", "op", 2, 0)
		if op := h.c.ops["op"]; op == nil || !op.done {
			t.Fatalf("holding attempt %d: the action sent again did not complete the operation", held)
		}
		if n := len(h.c.workers["w"].running); n != 0 {
			t.Fatalf("holding attempt %d: the worker still runs %d action(s)", held, n)
		}
	}
}

// A worker that comes back holding, in another attempt, an action the
// core cancelled on it frees that slot: the core does not wait for a
// give-back of an attempt the worker does not run.
func TestReconnectWithACancelledActionInAnotherAttemptFreesTheSlot(t *testing.T) {
	h := newHarness(t, nil)
	op := h.execute("op", "a", "", 0)
	h.connect("w", 1, nil)
	h.assignments()
	if err := h.c.Cancel(h.now, op.name); err != nil {
		t.Fatal(err)
	}
	h.collect()
	h.c.Disconnect(h.now, "w", h.gens["w"])
	h.connect("w", 1, []*workerpb.InHand{{OperationName: "op", Attempt: 2}})
	if n := len(h.c.workers["w"].running); n != 0 {
		t.Fatalf("the worker still has %d slot(s) taken by a cancelled action it does not run", n)
	}
	h.execute("next", "b", "", 0)
	if a := h.assignments(); len(a) != 1 || a[0].name != "next" {
		t.Fatalf("sent %v, want the next action on the freed slot", a)
	}
}

// TestLostAtEveryRestartCountsAsRetries: an action its worker no longer
// holds when it comes back after a restart is requeued as a retry, so an
// action that brings the whole farm down each time it runs (paddock up,
// its worker and scheduler in one process) ends UNAVAILABLE after
// max_retries restarts instead of being run again after every one.
func TestLostAtEveryRestartCountsAsRetries(t *testing.T) {
	h := newHarness(t, nil)
	h.connect("w", 1, nil)
	h.execute("op", "crasher", "", 0)
	for i := 0; i <= h.cfg.MaxRetries; i++ {
		if got := h.assignments(); len(got) != 1 {
			t.Fatalf("restart %d: %d assignments, want the action dispatched once", i, len(got))
		}
		h.restart()
		h.connect("w", 1, nil) // the process died: the worker holds nothing
	}
	v, ok := h.c.Operation("op")
	if !ok || !v.done || codes.Code(v.response.GetStatus().GetCode()) != codes.Unavailable {
		t.Fatalf("after %d restarts that lost it: %+v, want done UNAVAILABLE", h.cfg.MaxRetries+1, v)
	}
}
