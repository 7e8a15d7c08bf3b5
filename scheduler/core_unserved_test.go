package scheduler

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/code"

	"github.com/paddock-build/paddock/api/workerpb"
)

// TestUnservedActionsFailAfterNoWorkerTimeout: actions queued for a
// platform no connected worker offers complete with FAILED_PRECONDITION
// naming the platform after no_worker_timeout, not before; actions a busy
// worker serves keep waiting; a restart replays the same ends.
func TestUnservedActionsFailAfterNoWorkerTimeout(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.NoWorkerTimeout = 10 * time.Minute })
	linux := &workerpb.Property{Name: "OSFamily", Value: "linux"}
	windows := &workerpb.Property{Name: "OSFamily", Value: "windows"}
	h.connect("lin", 1, nil, linux)
	h.execute("busy", "busy", "", 0, linux)
	waiting := h.execute("waiting", "waiting", "", 0, linux) // behind busy: served, not running
	win1 := h.execute("win1", "win1", "", 0, windows)
	win2 := h.execute("win2", "win2", "", 0, windows)
	wait := func(d time.Duration) { // lin heartbeats well within its lease
		for end := h.now.Add(d); h.now.Before(end); {
			h.advance(10 * time.Second)
			h.heartbeat("lin")
		}
	}
	wait(9 * time.Minute)
	if win1.done || win2.done {
		t.Fatal("unserved actions failed before no_worker_timeout")
	}
	wait(2 * time.Minute)
	for _, op := range []*operation{win1, win2} {
		if !op.done || statusCode(op) != code.Code_FAILED_PRECONDITION || !strings.Contains(op.response.GetStatus().GetMessage(), "OSFamily=windows") {
			t.Fatalf("%s after no_worker_timeout: done %v, %v; want FAILED_PRECONDITION naming OSFamily=windows", op.name, op.done, op.response.GetStatus())
		}
	}
	if waiting.done {
		t.Fatal("an action a busy worker serves failed as unserved")
	}
	if n := h.c.queuedPerInstance[""]; n != 1 {
		t.Fatalf("%d actions counted queued, want 1 (waiting)", n)
	}
	h.restart()
	if op := h.c.ops["win1"]; op == nil || !op.done || statusCode(op) != code.Code_FAILED_PRECONDITION {
		t.Fatalf("after a restart win1 is %+v", op)
	}
	if n := h.c.queuedPerInstance[""]; n != 1 {
		t.Fatalf("after a restart %d actions counted queued, want 1", n)
	}
}

// TestLostWorkersLeaveTheirQueuesUnserved: when the last worker of a
// platform is lost, its queued actions fail no_worker_timeout later; with
// no_worker_timeout 0 (workers started on demand) they never do.
func TestLostWorkersLeaveTheirQueuesUnserved(t *testing.T) {
	for _, timeout := range []time.Duration{5 * time.Minute, 0} {
		h := newHarness(t, func(c *Config) { c.NoWorkerTimeout = timeout })
		gpu := &workerpb.Property{Name: "Pool", Value: "gpu"}
		h.connect("g", 1, nil, gpu)
		h.execute("first", "first", "", 0, gpu)
		queued := h.execute("queued", "queued", "", 0, gpu)
		h.advance(time.Hour) // the worker's lease runs out; first is requeued, then both wait
		for range 10 {
			h.advance(time.Minute)
		}
		if timeout == 0 {
			if queued.done {
				t.Fatal("with no_worker_timeout 0 an unserved action failed")
			}
			continue
		}
		if !queued.done || statusCode(queued) != code.Code_FAILED_PRECONDITION {
			t.Fatalf("an action whose only worker was lost: done %v, %v; want FAILED_PRECONDITION", queued.done, queued.response.GetStatus())
		}
	}
}

// TestWorkersThatLeftDoNotServe: when the last worker of a platform says
// it is leaving, its queued actions fail no_worker_timeout after that, not
// reconnect_grace later, as if it might still come back.
func TestWorkersThatLeftDoNotServe(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.NoWorkerTimeout = 5 * time.Minute })
	gpu := &workerpb.Property{Name: "Pool", Value: "gpu"}
	h.connect("g", 1, nil, gpu)
	h.execute("first", "first", "", 0, gpu)
	queued := h.execute("queued", "queued", "", 0, gpu)
	h.c.Leave(h.now, "g", h.gens["g"])
	h.c.GiveBack(h.now, "g", h.gens["g"], "first", 1)
	h.c.Disconnect(h.now, "g", h.gens["g"])
	h.collect()
	h.advance(time.Second) // the wait starts here, within g's reconnect_grace
	h.advance(5 * time.Minute)
	if !queued.done || statusCode(queued) != code.Code_FAILED_PRECONDITION {
		t.Fatalf("no_worker_timeout after the last worker left: done %v, %v; want FAILED_PRECONDITION", queued.done, queued.response.GetStatus())
	}
}
