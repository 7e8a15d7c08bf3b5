package scheduler

import (
	"fmt"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/digest"
)

// recordKind names a change of the core's durable state.
type recordKind uint8

const (
	// recExecute: an Execute was accepted (queued, or joined an identical
	// execution in flight). sub and at.
	recExecute recordKind = iota + 1
	// recCached: an Execute was answered from the action cache. name,
	// instance, action, resp, at.
	recCached
	// recCancel: name was cancelled at at, for reason (CancelOperation,
	// or, in journals written before recAbandon, abandoned by its clients).
	recCancel
	// recDelete: DeleteOperation of name.
	recDelete
	// recDispatch: execution name went to worker, at.
	recDispatch
	// recRequeue: execution name went back to the front of its queue,
	// having been retried retries times.
	recRequeue
	// recFinish: execution name completed with resp, at; worker is the
	// one it ran on, or empty if that worker had been lost.
	recFinish
	// recExpire: the retained completed operations named in expired were
	// forgotten at at, their completed_retention being up. Records before
	// version 4 said only when (expiredByTime), and a replay forgot what
	// the retention in force then made old enough.
	recExpire
	// recAdopt: queued execution name was found running on worker, which
	// had received it before a restart that lost its dispatch record.
	recAdopt
	// recAbandon: name was abandoned by its clients at at, for reason.
	recAbandon
)

// record is one entry of the scheduler's journal: a change of the core's
// durable state (operations, executions, queues), written before its
// effects are carried out. Replaying the records in order through
// core.replay rebuilds the state; how the core decided (which worker was
// free, whose lease ran out) is in the records, so replay needs no workers.
// Worker liveness (sessions, heartbeats) is not recorded: after a restart
// every worker must reconnect.
type record struct {
	kind     recordKind
	at       time.Time
	name     string      // operation name, or execution id for dispatch/requeue/finish
	sub      *submission // recExecute only
	instance string
	owner    string // recCached: the tenant that created it
	action   digest.Digest
	worker   string
	reason   string // recCancel, recAbandon
	retries  int
	resp     *repb.ExecuteResponse
	// expired names the operations a recExpire forgot (version 4), so
	// that a replay forgets those whatever completed_retention says then:
	// replayed by its time under a retention changed across a restart, an
	// expiry forgot other operations than the live core had, and a later
	// record naming one (a DeleteOperation, a delete for
	// max_completed_bytes) made the scheduler refuse to start.
	// expiredByTime marks a record of an older version, which names none.
	expired       []string
	expiredByTime bool
}

// record notes a durable change for the journal. The caller writes the
// records before carrying out the effects that come with them.
func (c *core) record(r record) {
	if !c.replaying { // a replayed change is in the journal already
		c.fx.records = append(c.fx.records, r)
	}
}

// replay applies one journal record, as the live core did when it wrote it.
// Effects are discarded by the caller. An inconsistent record (naming an
// execution that does not exist, or one that is not at the head of its
// queue) is an error: the journal does not belong to this state.
func (c *core) replay(r record) error {
	switch r.kind {
	case recExecute:
		_, err := c.Execute(r.at, *r.sub)
		return err
	case recCached:
		c.AddCompleted(r.at, r.name, r.instance, r.owner, r.action, r.resp)
		return nil
	case recCancel:
		return c.CancelFor(r.at, r.name, r.reason)
	case recAbandon:
		return c.Abandon(r.at, r.name, r.reason)
	case recDelete:
		if c.ops[r.name] == nil && c.forgotByTime[r.name] {
			return nil // see replayExpire
		}
		return c.Delete(r.at, r.name)
	case recExpire:
		return c.replayExpire(r)
	}
	e := c.execs[r.name]
	if e == nil {
		return fmt.Errorf("record %d names execution %q, which is not live", r.kind, r.name)
	}
	switch r.kind {
	case recDispatch:
		if e.stage != repb.ExecutionStage_QUEUED {
			return fmt.Errorf("dispatch of %q, which is not queued", r.name)
		}
		if got := e.queue.pop(); got != e {
			return fmt.Errorf("dispatch of %q, which is not at the head of its queue", r.name)
		}
		c.countQueued(e.queue, -e.weight())
		c.start(r.at, c.placeholder(r.worker), e)
	case recAdopt:
		if e.stage != repb.ExecutionStage_QUEUED {
			return fmt.Errorf("adoption of %q, which is not queued", r.name)
		}
		e.queue.remove(e)
		c.countQueued(e.queue, -e.weight())
		c.start(r.at, c.placeholder(r.worker), e)
	case recRequeue:
		if e.stage != repb.ExecutionStage_EXECUTING {
			return fmt.Errorf("requeue of %q, which is not executing", r.name)
		}
		c.release(e.worker, e)
		e.retries = r.retries
		c.requeue(r.at, e)
	case recFinish:
		if e.stage == repb.ExecutionStage_QUEUED {
			// No worker served its queue (failUnserved).
			e.queue.remove(e)
			c.countQueued(e.queue, -e.weight())
			c.finish(r.at, e, r.resp)
			break
		}
		if e.stage != repb.ExecutionStage_EXECUTING {
			return fmt.Errorf("finish of %q, which is neither queued nor executing", r.name)
		}
		w := e.worker
		if r.worker == "" {
			// Its worker was lost before it gave up on the action.
			e.worker = nil
		}
		c.finish(r.at, e, r.resp)
		c.release(w, e)
	default:
		return fmt.Errorf("unknown record kind %d", r.kind)
	}
	return nil
}

// placeholder returns the worker a replayed dispatch went to, creating it
// disconnected: it gets no work until it registers again.
func (c *core) placeholder(id string) *worker {
	w := c.workers[id]
	if w == nil {
		w = &worker{id: id, running: map[string]*execution{}}
		c.workers[id] = w
	}
	return w
}

// recovered finishes a replay at time now: each worker that held actions
// gets ReconnectGrace from now to register again and re-report them (or
// they are requeued as lost, under MaxRetries; the ones it does not hold
// when it registers are requeued without counting a retry, since their
// assignment most likely died with the old process); executions already
// cancelled or completed are forgotten on it (the worker is told to cancel
// them when it reconnects); workers holding nothing are dropped.
func (c *core) recovered(now time.Time) {
	for _, w := range sortedValues(c.workers) {
		for _, e := range sortedValues(w.running) {
			if e.cancelled || e.stage != repb.ExecutionStage_EXECUTING {
				c.release(w, e)
			}
		}
		if len(w.running) == 0 {
			c.unlinkQueues(w)
			delete(c.workers, w.id)
			continue
		}
		w.connected, w.restored = false, true
		w.lastSeen, w.lostConn = now, now
	}
	for _, e := range c.execs {
		e.adoptable = e.stage == repb.ExecutionStage_QUEUED
	}
	c.unblocked = nil
	c.forgotByTime = nil
	c.fx = effects{}
}
