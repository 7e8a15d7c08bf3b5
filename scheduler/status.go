package scheduler

import (
	"cmp"
	"slices"
	"sort"
	"strings"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/digest"
)

// This file is the scheduler's read-only view for operators: the status
// page and the metrics read it. Every method takes the lock once and
// copies what it returns, so callers never see the core change under them.

// QueueStatus is one queue: an instance name and a routing platform.
type QueueStatus struct {
	Instance string
	Platform []*workerpb.Property // routing properties, sorted; read-only
	Queued   int
	Running  int
	// OldestQueued is when the longest-waiting queued execution was
	// queued; zero when none is.
	OldestQueued time.Time
}

// WorkerStatus is one known worker.
type WorkerStatus struct {
	ID       string
	Platform []*workerpb.Property // read-only
	Slots    int
	// State is idle, busy, draining, leaving or disconnected.
	State string
	// Draining: an operator drained it (whatever State shows first, such
	// as disconnected); Undrain takes it back.
	Draining bool
	// Paused: the worker said it cannot run actions now (its runner or
	// storage is down) and is given no new work; PauseReason says why.
	// State does not show it: a paused worker may be busy with what it
	// holds.
	Paused      bool
	PauseReason string
	Running     []string // operation names of its executions, sorted
	LastSeen    time.Time
}

// OperationStatus is one operation.
type OperationStatus struct {
	Name     string
	Instance string
	Action   digest.Digest
	Stage    repb.ExecutionStage_Value
	Done     bool
	Worker   string
	QueuedAt time.Time
	// StartedAt is when its worker got it; zero while queued.
	StartedAt   time.Time
	CompletedAt time.Time
	// Response is set once done; shared and read-only.
	Response *repb.ExecuteResponse
}

// OperationFilter selects a page of operations, newest queued first.
type OperationFilter struct {
	// Stage keeps only operations in that stage; UNKNOWN keeps all.
	Stage repb.ExecutionStage_Value
	// Action keeps only operations of that action, when set.
	Action        digest.Digest
	Offset, Limit int
}

// Queues lists the queues, by instance name then platform. Tenants
// sharing an instance name have a queue each in the core; here they are
// one, as clients and metrics know queues.
func (s *Scheduler) Queues() []QueueStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queuesLocked(func(q *queue) string { return q.instance })
}

// queuesLocked lists the queues as Queues does, each under the name
// nameOf gives it: queues of one name and platform are one. Called under
// the scheduler's lock.
func (s *Scheduler) queuesLocked(nameOf func(*queue) string) []QueueStatus {
	index := make(map[*queue]int, len(s.core.queues))
	byName := make(map[string]int, len(s.core.queues))
	out := make([]QueueStatus, 0, len(s.core.queues))
	for _, q := range s.core.queues {
		instance := nameOf(q)
		name := instance + "\x00" + platformString(q.routing)
		i, ok := byName[name]
		if !ok {
			i = len(out)
			byName[name] = i
			out = append(out, QueueStatus{Instance: instance, Platform: q.routing})
		}
		index[q] = i
		out[i].Queued += q.size
	}
	for _, e := range s.core.execs {
		i, ok := index[e.queue]
		if !ok {
			continue
		}
		qs := &out[i]
		switch e.stage {
		case repb.ExecutionStage_QUEUED:
			if qs.OldestQueued.IsZero() || e.queuedAt.Before(qs.OldestQueued) {
				qs.OldestQueued = e.queuedAt
			}
		case repb.ExecutionStage_EXECUTING:
			qs.Running++
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Instance != out[j].Instance {
			return out[i].Instance < out[j].Instance
		}
		return platformString(out[i].Platform) < platformString(out[j].Platform)
	})
	return out
}

// Workers lists the known workers by id.
func (s *Scheduler) Workers() []WorkerStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]WorkerStatus, 0, len(s.core.workers))
	for _, w := range s.core.workers {
		ws := WorkerStatus{ID: w.id, Platform: w.platform, Slots: w.capacity, State: workerState(w), Draining: w.draining,
			Paused: w.paused, PauseReason: w.pauseReason, LastSeen: w.lastSeen}
		for id := range w.running {
			ws.Running = append(ws.Running, id)
		}
		sort.Strings(ws.Running)
		out = append(out, ws)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func workerState(w *worker) string {
	switch {
	case !w.connected:
		return "disconnected"
	case w.draining:
		return "draining"
	case w.leaving:
		return "leaving"
	case len(w.running) > 0:
		return "busy"
	}
	return "idle"
}

// Operations returns a page of the operations f selects, newest queued
// first (ties by name), and how many it selects in all.
func (s *Scheduler) Operations(f OperationFilter) ([]OperationStatus, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Sort small entries; build the views of the page only.
	type entry struct {
		queuedAt int64
		op       *operation
	}
	sel := make([]entry, 0, len(s.core.ops))
	for _, op := range s.core.ops {
		if !f.Action.IsZero() && op.action != f.Action {
			continue
		}
		if f.Stage != repb.ExecutionStage_UNKNOWN && op.stage() != f.Stage {
			continue
		}
		sel = append(sel, entry{op.queuedAt.UnixNano(), op})
	}
	slices.SortFunc(sel, func(a, b entry) int {
		if c := cmp.Compare(b.queuedAt, a.queuedAt); c != 0 {
			return c
		}
		return strings.Compare(a.op.name, b.op.name)
	})
	total := len(sel)
	lo := min(max(f.Offset, 0), total)
	hi := total
	if f.Limit > 0 {
		hi = min(lo+f.Limit, total)
	}
	out := make([]OperationStatus, 0, hi-lo)
	for _, e := range sel[lo:hi] {
		v := e.op.view()
		out = append(out, OperationStatus{
			Name: v.name, Instance: v.instance, Action: v.action, Stage: v.stage, Done: v.done,
			Worker: v.worker, QueuedAt: v.queuedAt, StartedAt: v.startedAt, CompletedAt: e.op.completedAt,
			Response: v.response,
		})
	}
	return out, total
}

// stage is op.view().stage, without the copy.
func (op *operation) stage() repb.ExecutionStage_Value {
	if op.exec != nil && !op.done {
		return op.exec.stage
	}
	return repb.ExecutionStage_COMPLETED
}
