package scheduler

import (
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// join adds op, of submission s, to the waiters of e, an identical
// execution in flight; RESOURCE_EXHAUSTED past the tenant's joinBound.
func (c *core) join(now time.Time, op *operation, e *execution, s submission) error {
	if t := c.tenantOf(s.owner); !c.replaying && t.waiting >= t.joinBound() {
		return status.Errorf(codes.ResourceExhausted, "%s already has %d operations not done (its own executions and Executes joined to identical ones in flight), at most %d for each action it has queued or running and %d besides; follow an operation it has with WaitExecution rather than Execute the action again", tenantText(s.owner), t.waiting, joinsPerExecution, joinsFree)
	}
	op.exec = e
	op.queuedAt = e.queuedAt
	e.waiters = append(e.waiters, op)
	c.addOp(op)
	c.record(record{kind: recExecute, at: now, sub: &s})
	if e.stage == repb.ExecutionStage_QUEUED && s.priority < e.priority {
		// The most urgent waiter decides the priority.
		e.queue.remove(e)
		c.countQueued(e.queue, -e.weight())
		e.priority = s.priority
		c.enqueue(e, false)
		c.pumpQueue(now, e.queue)
	}
	return nil
}
