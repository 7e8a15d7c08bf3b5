package scheduler

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/api/workerpb"
)

// crashModel runs a core with workers that behave as workerclient does,
// and crashes it at random: the records written since the last commit are
// lost, the core is replayed from the rest, and every worker registers
// again with what it holds, which may come from assignments whose records
// were lost. It is TestSchedulerKilledRepeatedlyLosesNoOperation without
// processes, so that it can try thousands of crash points quickly.
type crashModel struct {
	t       *testing.T
	rng     *rand.Rand
	cfg     Config
	c       *core
	now     time.Time
	records []record
	durable int // records[:durable] survive a crash
	workers map[string]*modelWorker
	n       int
	seen    map[string]int // notes of the kinds the model means to meet, counted
}

// modelWorkers are the model's workers, in a fixed order.
var modelWorkers = []string{"w0", "w1", "w2"}

func (m *crashModel) anyWorker() *modelWorker {
	return m.workers[modelWorkers[m.rng.IntN(len(modelWorkers))]]
}

// modelWorker is what a worker holds: operation name → attempt.
type modelWorker struct {
	id   string
	gen  uint64
	held map[string]int32
	// silent: the worker's stream and heartbeats stopped (a partition,
	// a pause); it keeps what it holds and registers again later.
	silent bool
}

// take collects the core's effects: records are appended (not yet
// durable) and messages reach the workers' current sessions.
func (m *crashModel) take() {
	fx := m.c.takeEffects()
	for _, n := range fx.notes {
		for _, w := range []string{"worker lost", "adopted", "came back", "reconnected without"} {
			if strings.Contains(n, w) {
				m.seen[w]++
			}
		}
	}
	m.records = append(m.records, fx.records...)
	for _, msg := range fx.dispatch {
		w := m.workers[msg.worker]
		if w == nil || msg.gen != w.gen {
			continue
		}
		switch k := msg.msg.Kind.(type) {
		case *workerpb.SchedulerMessage_Assignment:
			w.held[k.Assignment.OperationName] = k.Assignment.Attempt
		case *workerpb.SchedulerMessage_Cancel:
			// The worker stops the action and reports it cancelled.
			if a, ok := w.held[k.Cancel.OperationName]; ok {
				delete(w.held, k.Cancel.OperationName)
				defer m.report(w, k.Cancel.OperationName, a, &repb.ExecuteResponse{Status: &rpcstatus.Status{Code: 1}})
			}
		}
	}
}

func (m *crashModel) report(w *modelWorker, name string, attempt int32, resp *repb.ExecuteResponse) {
	m.c.Result(m.now, w.id, w.gen, name, attempt, resp)
	m.take()
}

// anyHeld returns one of the actions w holds, or "".
func (m *crashModel) anyHeld(w *modelWorker) string {
	if len(w.held) == 0 {
		return ""
	}
	names := slices.Sorted(maps.Keys(w.held))
	return names[m.rng.IntN(len(names))]
}

// finishOne has w finish one of the actions it holds, if any.
func (m *crashModel) finishOne(w *modelWorker) {
	name := m.anyHeld(w)
	if name == "" {
		return
	}
	attempt := w.held[name]
	delete(w.held, name)
	m.report(w, name, attempt, &repb.ExecuteResponse{Result: &repb.ActionResult{}})
}

func (m *crashModel) connect(w *modelWorker) {
	var inHand []*workerpb.InHand
	for _, name := range slices.Sorted(maps.Keys(w.held)) {
		inHand = append(inHand, &workerpb.InHand{OperationName: name, Attempt: w.held[name]})
	}
	w.gen = m.c.Connect(m.now, registration{id: w.id, capacity: 3, running: inHand, platform: []*workerpb.Property{linux}})
	m.take()
}

// crash loses the records after the last commit and replays the rest.
func (m *crashModel) crash() {
	m.records = m.records[:m.durable]
	m.c = replayed(m.t, m.cfg, scenarioLimits, nil, m.records)
	m.c.recovered(m.now)
	for _, id := range modelWorkers {
		if !m.workers[id].silent {
			m.connect(m.workers[id])
		}
	}
}

func (m *crashModel) step() {
	m.now = m.now.Add(time.Duration(m.rng.IntN(50)) * time.Millisecond)
	switch k := m.rng.IntN(100); {
	case k < 30:
		m.n++
		sub := benchSubmission(m.n)
		if m.rng.IntN(4) == 0 {
			// The same action as an earlier one: deduplicated onto
			// its execution while that one is in flight.
			sub = benchSubmission(m.rng.IntN(m.n))
			sub.name = fmt.Sprintf("operations/again-%d", m.n)
		}
		sub.owner = fmt.Sprint("tenant-", m.rng.IntN(2)) // limited: scenarioLimits
		// Refused (RESOURCE_EXHAUSTED) only over tenant-1's max_queued.
		if _, err := m.c.Execute(m.now, sub); err != nil && status.Code(err) != codes.ResourceExhausted {
			m.t.Fatalf("Execute %s: %v", sub.name, err)
		}
		m.take()
	case k < 31:
		// The worker gives an action back (it is shutting down).
		w := m.anyWorker()
		if name := m.anyHeld(w); name != "" && !w.silent {
			attempt := w.held[name]
			delete(w.held, name)
			m.c.GiveBack(m.now, w.id, w.gen, name, attempt)
			m.take()
		}
	case k < 32:
		mayBeNotFound(m.t, "Cancel", m.c.Cancel(m.now, benchSubmission(m.rng.IntN(m.n+1)).name))
		m.take()
	case k < 75:
		if w := m.anyWorker(); !w.silent {
			m.finishOne(w)
		}
	case k < 91:
		m.durable = len(m.records) // a group commit
	case k < 93:
		// An operator drains a worker, or undrains it.
		id := m.anyWorker().id
		if m.rng.IntN(2) == 0 {
			_, err := m.c.Drain(m.now, id)
			mayBeNotFound(m.t, "Drain "+id, err)
		} else {
			_, err := m.c.Undrain(m.now, id)
			mayBeNotFound(m.t, "Undrain "+id, err)
		}
		m.take()
	case k < 96:
		m.crash()
	case k < 98:
		// A worker's stream breaks and it registers again, at once or
		// after a silence long enough to lose its lease.
		w := m.anyWorker()
		if w.silent {
			w.silent = false
			m.connect(w)
			break
		}
		m.c.Disconnect(m.now, w.id, w.gen)
		switch m.rng.IntN(4) {
		case 0, 1:
			w.silent = true
		case 2:
			// The worker process restarted: it holds nothing.
			w.held = map[string]int32{}
		}
		if !w.silent {
			m.connect(w)
		}
	default:
		m.now = m.now.Add(time.Duration(m.rng.IntN(4000)) * time.Millisecond)
		m.c.Tick(m.now)
		m.take()
	}
	m.heartbeats()
	if t0 := m.c.tenants["tenant-0"]; t0 != nil && t0.queued > 0 && t0.running >= 2 {
		m.seen["tenant-0 held at max_running"]++
	}
}

func (m *crashModel) heartbeats() {
	for _, w := range m.workers {
		if !w.silent {
			m.c.Heartbeat(m.now, w.id, w.gen)
		}
	}
}

// A scheduler that crashes anywhere, losing what it had not yet committed,
// and workers whose streams break, never strand an operation (with
// deduplication, cancels, give-backs, drains and tenants' limits): once the crashes stop and the workers finish
// what they hold, every operation the journal kept completes, and no
// worker slot stays taken.
func TestCrashesAnywhereStrandNoOperation(t *testing.T) {
	seen := map[string]int{}
	for seed := uint64(1); seed <= 200; seed++ {
		cfg := DefaultConfig()
		cfg.LeaseDuration, cfg.ReconnectGrace, cfg.MaxRetries = 10*time.Second, 5*time.Second, 1000
		m := &crashModel{t: t, rng: rand.New(rand.NewPCG(seed, 11)), cfg: cfg, c: newCoreWithLimits(cfg, scenarioLimits),
			now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), workers: map[string]*modelWorker{}, seen: seen}
		for _, id := range modelWorkers {
			m.workers[id] = &modelWorker{id: id, held: map[string]int32{}}
			m.connect(m.workers[id])
		}
		for i := 0; i < 400; i++ {
			m.step()
		}
		// No more crashes: every worker is back, undrained, and
		// finishes what it holds; time passes.
		for _, id := range modelWorkers {
			if w := m.workers[id]; w.silent {
				w.silent = false
				m.connect(w)
			}
			if _, err := m.c.Undrain(m.now, id); err != nil {
				t.Fatalf("seed %d: Undrain %s: %v", seed, id, err)
			}
			m.take()
		}
		for round := 0; round < 100 && m.pending() > 0; round++ {
			for _, id := range modelWorkers {
				for len(m.workers[id].held) > 0 {
					m.finishOne(m.workers[id])
				}
			}
			m.now = m.now.Add(time.Second)
			m.c.Tick(m.now)
			m.take()
			m.heartbeats()
		}
		if n := m.pending(); n > 0 {
			var stuck []string
			for _, op := range sortedValues(m.c.ops) {
				if !op.done && op.exec != nil {
					w := "-"
					if op.exec.worker != nil {
						w = op.exec.worker.id
					}
					stuck = append(stuck, fmt.Sprintf("%s (stage %v, attempt %d, worker %s)", op.name, op.exec.stage, op.exec.attempt, w))
				}
			}
			t.Fatalf("seed %d: %d operation(s) never complete after the crashes stop: %v", seed, n, stuck[:min(3, len(stuck))])
		}
		checkTenantCounts(t, m.c)
		for _, w := range m.c.workers {
			if len(w.running) > 0 {
				t.Fatalf("seed %d: worker %s keeps %d slot(s) taken with nothing left to run", seed, w.id, len(w.running))
			}
		}
	}
	// The model must reach the cases it is for.
	for _, kind := range []string{"worker lost", "adopted", "came back", "reconnected without", "tenant-0 held at max_running"} {
		if seen[kind] == 0 {
			t.Errorf("no seed met a %q decision; the model tests less than it should (%v)", kind, seen)
		}
	}
	t.Logf("decisions met: %v", seen)
}

func (m *crashModel) pending() int {
	n := 0
	for _, op := range m.c.ops {
		if !op.done {
			n++
		}
	}
	return n
}
