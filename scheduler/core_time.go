package scheduler

import (
	"fmt"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"

	"github.com/paddock-build/paddock/api/workerpb"
)

// This file holds the core's reactions to the passage of time: worker
// leases, overdue executions, retention of completed operations.

// Tick expires worker leases, overdue executions, executions no worker
// serves and completed operations.
func (c *core) Tick(now time.Time) {
	var lost []lostWorker
	for _, w := range sortedValues(c.workers) {
		switch {
		case now.Sub(w.lastSeen) >= c.cfg.LeaseDuration:
			lost = append(lost, lostWorker{w, fmt.Sprintf("worker %q sent nothing for %s", w.id, now.Sub(w.lastSeen))})
		case !w.connected && now.Sub(w.lostConn) >= c.cfg.ReconnectGrace:
			lost = append(lost, lostWorker{w, fmt.Sprintf("worker %q lost its connection and did not reconnect within %s", w.id, c.cfg.ReconnectGrace)})
		}
	}
	c.lose(now, lost...)
	var overdue []*execution
	for _, w := range sortedValues(c.workers) {
		for _, e := range sortedValues(w.running) {
			if !e.cancelled && e.spec.timeout > 0 && now.Sub(e.startedAt) >= e.spec.timeout+c.cfg.TimeoutGrace {
				overdue = append(overdue, e)
			}
		}
	}
	for _, e := range overdue {
		why := fmt.Sprintf("worker %q did not report the action within its timeout %s plus timeout_grace %s", e.worker.id, e.spec.timeout, c.cfg.TimeoutGrace)
		c.note("action %s (%s): %s; completed with DEADLINE_EXCEEDED", e.key.action, e.id, why)
		c.finish(now, e, &repb.ExecuteResponse{Status: &rpcstatus.Status{Code: int32(code.Code_DEADLINE_EXCEEDED), Message: why}})
		// It keeps its worker's slot until the worker reports it.
		e.cancelled = true
		c.send(e.worker.id, &workerpb.SchedulerMessage{Kind: &workerpb.SchedulerMessage_Cancel{
			Cancel: &workerpb.Cancel{OperationName: e.id, Reason: why}}})
	}
	for _, w := range sortedValues(c.workers) {
		if w.pauseFlipsUnnoted > 0 && now.Sub(w.pauseNoted) >= pauseNoteInterval {
			c.notePause(now, w) // the state the last flips passed over left
		}
	}
	c.lapseAvoids(now)
	c.failUnserved(now)
	c.expire(now)
	c.shrinkMaps()
}

// ForgiveStall moves every worker's lease, and the reconnect grace of
// those disconnected, on by gap, never past now: the scheduler itself did
// not run for gap (a frozen VM, a stopped process, the machine swapping),
// so its workers' silence over that time says nothing of them, and what
// they sent meanwhile is still to be read. Before, the first tick after a
// stall longer than LeaseDuration lost every worker, and their actions,
// requeued, were thrown away when the workers reconnected a moment later.
func (c *core) ForgiveStall(now time.Time, gap time.Duration) {
	for _, w := range c.workers {
		w.lastSeen = earliest(w.lastSeen.Add(gap), now)
		if !w.connected {
			w.lostConn = earliest(w.lostConn.Add(gap), now)
		}
	}
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// maxExpiredPerRecord bounds the names in one recExpire: a tick after a
// long stall, or the first after a restart with a shorter retention, may
// expire every retained operation at once, and a record over the
// journal's 64 MiB would be read back as a torn tail.
const maxExpiredPerRecord = 10_000

// expire forgets the completed operations older than CompletedRetention.
// Its records name them, so that a replay forgets those and no others
// whatever the retention is then (replayExpire).
func (c *core) expire(now time.Time) {
	names := c.expireOlder(now, c.cfg.CompletedRetention)
	for len(names) > 0 {
		n := min(len(names), maxExpiredPerRecord)
		c.record(record{kind: recExpire, at: now, expired: names[:n:n]})
		names = names[n:]
	}
}
