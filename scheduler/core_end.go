package scheduler

import (
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"

	"github.com/paddock-build/paddock/api/workerpb"
)

// How an operation ends before its execution does: cancelled by its
// client, abandoned by every client, or deleted.

// Cancel completes an operation with CANCELLED. Its execution is stopped
// (dequeued, or killed on its worker) only if no other operation waits for
// it. Cancelling a completed operation does nothing.
func (c *core) Cancel(now time.Time, name string) error {
	return c.CancelFor(now, name, "cancelled by CancelOperation")
}

// CancelFor is Cancel with the reason given in the operation's status.
func (c *core) CancelFor(now time.Time, name, why string) error {
	return c.end(now, name, why, recCancel)
}

// Abandon ends an operation no client has followed for a while, for the
// reason why. Its status is NOT_FOUND, not CANCELLED: REv2 keeps
// CANCELLED for a CancelOperation the client called, and gives NOT_FOUND
// for an operation that no longer exists for a transient reason, which a
// client answers by calling Execute again.
func (c *core) Abandon(now time.Time, name, why string) error {
	return c.end(now, name, why, recAbandon)
}

// end completes the operation name before its execution did, cancelled
// (recCancel) or abandoned (recAbandon), and stops the execution if no
// other operation waits for it.
func (c *core) end(now time.Time, name, why string, kind recordKind) error {
	op := c.ops[name]
	if op == nil {
		return errOperationNotFound(name, "")
	}
	if op.done {
		return nil
	}
	st := code.Code_CANCELLED
	if kind == recAbandon {
		st = code.Code_NOT_FOUND
	}
	e := op.exec
	e.detach(op)
	c.completeOp(now, op, &repb.ExecuteResponse{Status: &rpcstatus.Status{
		Code: int32(st), Message: "operation " + why}})
	if len(e.waiters) == 0 {
		c.abandon(e, why)
	}
	c.record(record{kind: kind, at: now, name: name, reason: why})
	return nil
}

// Delete forgets an operation: per the Operations API, the client is no
// longer interested in its result. The execution goes on while another
// operation waits for it; when none does, it is stopped as a cancelled
// one is (the operation ends CANCELLED, recorded as such, before it is
// forgotten). Left running, nobody could stop it any more (its name is
// gone, so neither CancelOperation nor abandonment reaches it), and two
// calls would hold a worker's slot for the whole action timeout.
// A replay does not stop it here: journals written before this rule have
// a bare recDelete, and new ones the recCancel before it.
func (c *core) Delete(now time.Time, name string) error {
	op := c.ops[name]
	if op == nil {
		return errOperationNotFound(name, "")
	}
	if e := op.exec; e != nil && !op.done && !c.replaying && len(e.waiters) == 1 {
		_ = c.end(now, name, "deleted by DeleteOperation before it completed", recCancel) // it exists
	}
	if e := op.exec; e != nil {
		e.detach(op)
	}
	c.dropOp(op)
	if op.done {
		// Its entry stays in the completion order until its retention
		// is up, and must not keep the response.
		c.unretain(op)
		op.response = nil
	}
	c.fx.published = append(c.fx.published, name)
	c.record(record{kind: recDelete, at: now, name: name})
	return nil
}

// abandon stops an execution nobody waits for any more.
func (c *core) abandon(e *execution, why string) {
	if c.inflight[e.key] == e {
		delete(c.inflight, e.key)
	}
	switch e.stage {
	case repb.ExecutionStage_QUEUED:
		e.queue.remove(e)
		c.countQueued(e.queue, -e.weight())
		e.stage = repb.ExecutionStage_COMPLETED
	case repb.ExecutionStage_EXECUTING:
		// It keeps its worker's slot until the worker reports it.
		e.cancelled = true
		c.send(e.worker.id, &workerpb.SchedulerMessage{Kind: &workerpb.SchedulerMessage_Cancel{
			Cancel: &workerpb.Cancel{OperationName: e.id, Reason: why}}})
	}
	c.dropExec(e)
}
