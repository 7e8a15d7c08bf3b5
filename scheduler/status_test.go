package scheduler

import (
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// metricValue sums the gathered series of name whose labels include
// label=value (any series when label is "").
func metricValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.Metric {
			if label != "" && !hasLabel(m, label, value) {
				continue
			}
			sum += m.GetGauge().GetValue() + m.GetCounter().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

// wantMetric is one series' expected value: name{label=value}, or the sum
// of every series of name where label is "".
type wantMetric struct {
	name, label, value string
	want               float64
}

// wantMetrics checks each expected value against what reg gathers now.
func wantMetrics(t *testing.T, reg *prometheus.Registry, want []wantMetric) {
	t.Helper()
	for _, c := range want {
		if got := metricValue(t, reg, c.name, c.label, c.value); got != c.want {
			t.Errorf("%s{%s=%q} = %v, want %v", c.name, c.label, c.value, got, c.want)
		}
	}
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.Label {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// TestStatusAndMetrics: with one action running on a one-slot worker and
// two queued, the status views and the gauges say so; once they are done,
// the counters and the queue-wait histogram have seen three dispatches.
func TestStatusAndMetrics(t *testing.T) {
	f := startFarm(t, testConfig(), "", nil, nil)
	reg := prometheus.NewRegistry()
	reg.MustRegister(f.s.Collector())
	g := newGate()
	w := startTestWorker(t, f.addr, "w1", 1, g.run("w1"), linux)
	ctx := ctxTimeout(t)
	done := make(chan error, 3)
	for _, salt := range []string{"a", "b", "c"} {
		d := f.action(t, salt, func(a *repb.Action, c *repb.Command) {
			a.Platform = &repb.Platform{Properties: []*repb.Platform_Property{{Name: "OSFamily", Value: "linux"}}}
		})
		stream, err := f.exec.Execute(ctx, executeRequest(d))
		if err != nil {
			t.Fatal(err)
		}
		go func() { _, err := collect(stream); done <- err }()
	}
	w.waitFor(t, "one assignment", func() bool { return len(w.assigned) == 1 })
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, n := f.s.Operations(OperationFilter{Stage: repb.ExecutionStage_QUEUED}); n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("two operations never queued")
		}
		time.Sleep(2 * time.Millisecond) // polling, with the deadline above
	}

	qs := f.s.Queues()
	if len(qs) != 1 || qs[0].Queued != 2 || qs[0].Running != 1 || qs[0].OldestQueued.IsZero() || platformString(qs[0].Platform) != "OSFamily=linux" {
		t.Errorf("Queues() = %+v, want one OSFamily=linux queue with 2 queued, 1 running and an oldest wait", qs)
	}
	ws := f.s.Workers()
	if len(ws) != 1 || ws[0].ID != "w1" || ws[0].State != "busy" || ws[0].Slots != 1 || len(ws[0].Running) != 1 {
		t.Errorf("Workers() = %+v, want w1 busy with 1 of 1 slot", ws)
	}
	page, total := f.s.Operations(OperationFilter{Offset: 1, Limit: 1})
	all, _ := f.s.Operations(OperationFilter{})
	if total != 3 || len(page) != 1 || len(all) != 3 || page[0].Name != all[1].Name {
		t.Errorf("Operations(offset 1, limit 1) = %d of %d, want the second of 3", len(page), total)
	}
	for i := 1; i < len(all); i++ {
		if all[i].QueuedAt.After(all[i-1].QueuedAt) {
			t.Errorf("operations not newest first: %v after %v", all[i].QueuedAt, all[i-1].QueuedAt)
		}
	}
	wantMetrics(t, reg, []wantMetric{
		{"paddock_scheduler_queued_actions", "platform", "OSFamily=linux", 2},
		{"paddock_scheduler_running_actions", "", "", 1},
		{"paddock_scheduler_workers", "state", "busy", 1},
		{"paddock_scheduler_workers", "state", "idle", 0},
		{"paddock_scheduler_dispatches_total", "", "", 1},
	})

	close(g.release)
	for range 3 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	wantMetrics(t, reg, []wantMetric{
		{"paddock_scheduler_queued_actions", "", "", 0},
		{"paddock_scheduler_dispatches_total", "", "", 3},
		{"paddock_scheduler_queue_wait_seconds", "", "", 3},
		{"paddock_scheduler_workers", "state", "idle", 1},
		{"paddock_scheduler_retries_total", "", "", 0},
	})
	if ops, _ := f.s.Operations(OperationFilter{Stage: repb.ExecutionStage_COMPLETED}); len(ops) != 3 || ops[0].Response.GetResult().GetExitCode() != 3 || ops[0].Worker != "w1" {
		t.Errorf("completed operations %+v, want 3 with w1's result", ops)
	}
}

// TestWorkersShowAPause: Workers, which the status page lists, shows a
// worker's pause and its reason, as ListWorkers does, and its end.
func TestWorkersShowAPause(t *testing.T) {
	f := startFarm(t, testConfig(), "", nil, nil)
	reg := prometheus.NewRegistry()
	reg.MustRegister(f.s.Collector())
	w := startTestWorker(t, f.addr, "w1", 1, okRun("w1"), linux)
	w.waitFor(t, "registration", func() bool { return w.connects > 0 })
	worker := func() WorkerStatus {
		for _, ws := range f.s.Workers() {
			if ws.ID == "w1" {
				return ws
			}
		}
		t.Fatal("w1 is not listed")
		return WorkerStatus{}
	}
	waitWorker := func(what string, cond func(WorkerStatus) bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !cond(worker()) {
			if time.Now().After(deadline) {
				t.Fatalf("Workers() shows %+v, want %s", worker(), what)
			}
			time.Sleep(2 * time.Millisecond) // polling, with the deadline above
		}
	}
	if ws := worker(); ws.Paused || ws.PauseReason != "" {
		t.Fatalf("Workers() shows %+v, want not paused", ws)
	}
	w.c.SetPaused(true, "runner not ready: connection refused")
	waitWorker("paused with its reason", func(ws WorkerStatus) bool {
		return ws.Paused && ws.PauseReason == "runner not ready: connection refused" && ws.State == "idle"
	})
	// The metric counts it paused, not idle.
	wantMetrics(t, reg, []wantMetric{
		{"paddock_scheduler_workers", "state", "paused", 1},
		{"paddock_scheduler_workers", "state", "idle", 0},
	})
	w.c.SetPaused(false, "")
	waitWorker("not paused, without a reason", func(ws WorkerStatus) bool { return !ws.Paused && ws.PauseReason == "" })
}

// TestExecutesAreCountedByOutcome: an Execute the action cache answers,
// one queued and one merged into it are each counted under their outcome
// and instance name: a hit is never dispatched, so without this count a
// farm's cache hit rate could not be seen.
func TestExecutesAreCountedByOutcome(t *testing.T) {
	f := startFarm(t, testConfig(), "", nil, nil)
	reg := prometheus.NewRegistry()
	reg.MustRegister(f.s.Collector())
	ctx := ctxTimeout(t)
	hit := f.action(t, "hit", nil)
	if err := f.ac.Put(ctx, "", hit, &repb.ActionResult{}); err != nil {
		t.Fatal(err)
	}
	stream, err := f.exec.Execute(ctx, executeRequest(hit))
	if err != nil {
		t.Fatal(err)
	}
	ops, err := collect(stream)
	if err != nil || len(ops) == 0 || !responseOf(t, ops[len(ops)-1]).CachedResult {
		t.Fatalf("Execute of a cached action: %d messages, %v; want a cached result", len(ops), err)
	}
	g := newGate()
	w := startTestWorker(t, f.addr, "w1", 1, g.run("w1"))
	d := f.action(t, "run", nil)
	done := make(chan error, 2)
	for range 2 {
		stream, err := f.exec.Execute(ctx, executeRequest(d))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil { // accepted: its first message
			t.Fatal(err)
		}
		go func() { _, err := collect(stream); done <- err }()
	}
	w.waitFor(t, "one assignment", func() bool { return len(w.assigned) == 1 })
	close(g.release)
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if n := len(w.assigned); n != 1 {
		t.Errorf("the worker ran %d executions, want 1 (the second Execute joined the first)", n)
	}
	wantMetrics(t, reg, []wantMetric{
		{"paddock_scheduler_executes_total", "outcome", "cache_hit", 1},
		{"paddock_scheduler_executes_total", "outcome", "queued", 1},
		{"paddock_scheduler_executes_total", "outcome", "joined", 1},
		{"paddock_scheduler_executes_total", "instance", "", 3},
	})
}
