package scheduler

import (
	"fmt"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"

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

// expireOlder forgets the completed operations older than retention at
// now, and returns their names (not those deleted already).
func (c *core) expireOlder(now time.Time, retention time.Duration) []string {
	var names []string
	i := 0
	for ; i < len(c.completed); i++ {
		op := c.completed[i]
		if now.Sub(op.completedAt) < retention {
			break
		}
		if c.ops[op.name] == op {
			c.dropOp(op)
			c.fx.published = append(c.fx.published, op.name)
			names = append(names, op.name)
		}
		c.completedBytes -= op.respBytes
		c.completed[i] = nil
	}
	c.completed = c.completed[i:]
	return names
}

// replayExpire forgets the operations a recExpire names: the ones the
// live core forgot, which are the oldest retained. An older record names
// none, only its time; the retention in force now stands in for the one
// it was written under, and when that is shorter it forgets operations
// the live core still had, which later records may name: a delete of one
// (or a newer expiry) is taken as done (forgotByTime), as its operation
// is gone either way. A longer one keeps operations the live core had
// forgotten until that retention is up.
func (c *core) replayExpire(r record) error {
	if r.expiredByTime {
		if c.forgotByTime == nil {
			c.forgotByTime = map[string]bool{}
		}
		for _, name := range c.expireOlder(r.at, c.cfg.CompletedRetention) {
			c.forgotByTime[name] = true
		}
		return nil
	}
	for _, name := range r.expired {
		op := c.ops[name]
		if op == nil && c.forgotByTime[name] {
			continue
		}
		if op == nil || !op.done {
			return fmt.Errorf("expiry of %q, which is not a retained completed operation", name)
		}
		c.dropOp(op)
	}
	// Their entries leave the retention order from its front, with those
	// of operations deleted before (which the live core had dropped too).
	i := 0
	for ; i < len(c.completed) && c.ops[c.completed[i].name] != c.completed[i]; i++ {
		c.completedBytes -= c.completed[i].respBytes
		c.completed[i] = nil
	}
	c.completed = c.completed[i:]
	return nil
}

// retain keeps the completed op for CompletedRetention, its response
// counted against MaxCompletedBytes once for all the operations that
// share it: the waiters of one execution, completed one after another,
// hold one response. Counted once per waiter, twenty clients following an
// action with a 4 MB result took 80 MB of the 64 MiB bound, which then
// forgot all but one of them before they could read their result.
func (c *core) retain(op *operation) {
	op.respBytes = 0
	if n := len(c.completed); n == 0 || c.completed[n-1].response != op.response {
		op.respBytes = int64(proto.Size(op.response))
	}
	c.completedBytes += op.respBytes
	c.completed = append(c.completed, op)
}

// boundCompleted forgets the oldest completed operations, before their
// retention is up, while the responses retained take more than
// MaxCompletedBytes. Operations sharing a response go together (dropping
// one frees nothing while the others hold it), and those of the newest
// response are always kept. Each is deleted with a recDelete record, so
// that a replay does the same whatever the config then says (a replay
// itself forgets nothing here). It runs as a transaction's effects are
// taken, after the transaction's own records.
func (c *core) boundCompleted() {
	if c.replaying || len(c.completed) == 0 {
		return
	}
	newest := c.completed[len(c.completed)-1].response
	for c.completedBytes > c.cfg.MaxCompletedBytes && c.completed[0].response != newest {
		shared := c.completed[0].response
		for c.completed[0].response == shared {
			op := c.completed[0]
			c.completed[0] = nil
			c.completed = c.completed[1:]
			c.completedBytes -= op.respBytes
			if c.ops[op.name] == op {
				_ = c.Delete(c.completed[len(c.completed)-1].completedAt, op.name) // it exists
			}
		}
	}
}
