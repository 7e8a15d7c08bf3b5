package scheduler

import (
	"fmt"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
)

// Requeues, and where the next attempt of a requeued execution goes.
//
// An execution requeued because its worker failed it (a retryable
// result: the runner was dead, storage unreachable) or lost it goes back
// to the front of its queue. Its worker had just freed that slot, so it
// took the execution straight back: a worker that could run nothing
// failed one action max_retries+1 times, 30 s each, while a healthy
// worker became free beside it. So the next attempt avoids that worker:
// while the execution is next in its queue and another worker that
// serves the queue could take work (connected, neither drained, leaving
// nor paused, though perhaps busy), the avoided worker leaves that queue
// alone, and the first other worker with a free slot takes it. The
// avoidance ends when another worker takes the execution, when no other
// worker could (the avoided one may then take it: an action whose only
// worker failed it is not starved), or after LeaseDuration, so that a
// healthy worker beside busy ones does not stand idle for long over one
// transient failure. Only the queue's next execution is passed over,
// never reordered, so dispatch records replay as they did; the avoidance
// itself is not journalled (a restart forgets it, as it forgets workers).

// requeueLost puts back an execution whose worker was lost, or completes it
// with UNAVAILABLE once it has been retried MaxRetries times. Its next
// attempt avoids the worker that lost it (see above).
func (c *core) requeueLost(now time.Time, e *execution, why string) {
	lostBy := e.worker
	e.worker = nil
	e.retries++
	if e.retries > c.cfg.MaxRetries {
		c.note("action %s (%s): %s; retried %d times, completed with UNAVAILABLE", e.key.action, e.id, why, c.cfg.MaxRetries)
		c.finish(now, e, &repb.ExecuteResponse{Status: &rpcstatus.Status{
			Code: int32(code.Code_UNAVAILABLE),
			Message: fmt.Sprintf("action %s could not be run %d times (a worker lost, or one that said it could not run it), the last because %s; not retrying it (max_retries %d)",
				e.key.action, e.retries, why, c.cfg.MaxRetries)}})
		return
	}
	c.note("action %s (%s): %s; requeued (retry %d of %d)", e.key.action, e.id, why, e.retries, c.cfg.MaxRetries)
	c.fx.retries++
	if lostBy != nil {
		e.avoid, e.avoidUntil = lostBy.id, now.Add(c.cfg.LeaseDuration)
		c.avoided[e.id] = e
	}
	c.requeue(now, e)
}

// requeue puts e back at the front of its queue and dispatches what can be.
func (c *core) requeue(now time.Time, e *execution) {
	c.record(record{kind: recRequeue, at: now, name: e.id, retries: e.retries})
	c.enqueue(e, true)
	c.publish(e)
	c.pumpQueue(now, e.queue)
}

// passesOver reports whether w leaves q alone for now: q's next execution
// avoids w, and another worker could take it.
func (c *core) passesOver(w *worker, q *queue) bool {
	if len(c.avoided) == 0 {
		return false
	}
	e := q.peek()
	return e != nil && e.avoid == w.id && c.otherEligible(w, q)
}

// otherEligible reports whether a worker other than w serves q and may be
// given work, now or when a slot frees up.
func (c *core) otherEligible(w *worker, q *queue) bool {
	for _, o := range q.workers {
		if o != w && o.eligible() {
			return true
		}
	}
	return false
}

// forgetAvoid ends e's avoidance of a worker (it is dispatched, or the
// avoidance lapsed).
func (c *core) forgetAvoid(e *execution) {
	if e.avoid != "" {
		e.avoid, e.avoidUntil = "", time.Time{}
		delete(c.avoided, e.id)
	}
}

// lapseAvoids, at each Tick, ends the avoidances that are over: after
// LeaseDuration, or once no other worker could take the execution. The
// avoided worker, which may have stood idle meanwhile, is offered work.
// Executions that ended while queued are dropped from the index.
func (c *core) lapseAvoids(now time.Time) {
	for _, e := range sortedValues(c.avoided) {
		if e.stage != repb.ExecutionStage_QUEUED || c.execs[e.id] != e {
			c.forgetAvoid(e)
			continue
		}
		w := c.workers[e.avoid]
		if now.Before(e.avoidUntil) && (w == nil || c.otherEligible(w, e.queue)) {
			continue
		}
		c.forgetAvoid(e)
		if w != nil {
			c.pumpWorker(now, w)
		}
	}
}
