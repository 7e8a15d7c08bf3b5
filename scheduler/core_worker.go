package scheduler

import (
	"fmt"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"

	"github.com/paddock-build/paddock/api/workerpb"
)

// This file holds the core's worker events: connect, heartbeat, result,
// give back, disconnect, drain, undrain, lease loss.

// Connect (re)registers a worker and returns its session generation, which
// later events of that session carry so a stale session cannot act for a
// newer one. Actions the worker holds are reconciled: the ones the core
// still wants it to run are kept; it is told to cancel the rest; the ones
// the core thought it ran but it does not hold are requeued as lost.
func (c *core) Connect(now time.Time, r registration) uint64 {
	w := c.workers[r.id]
	if w == nil {
		w = &worker{id: r.id, running: map[string]*execution{}}
		c.workers[r.id] = w
	}
	w.gen++
	w.connected = true
	w.leaving = false
	w.draining = c.drained[r.id] // a worker lost while drained comes back drained
	w.paused, w.pauseReason = r.paused, r.pauseReason
	w.lastSeen = now
	w.capacity = r.capacity
	w.instances = r.instances
	w.labels = r.labels
	w.platform = r.platform
	w.props = map[string]bool{}
	for _, p := range r.platform {
		w.props[propKey(p.Name, p.Value)] = true
	}
	c.unlinkQueues(w)
	for _, q := range sortedValues(c.queues) {
		if w.serves(q) {
			q.workers = append(q.workers, w)
			w.queues = append(w.queues, q)
		}
	}

	inHand := c.reconcile(now, w, r.running)
	var lost []*execution
	for _, e := range sortedValues(w.running) {
		if !inHand[e.id] {
			c.release(w, e)
			if !e.cancelled {
				lost = append(lost, e)
			}
		}
	}
	for _, e := range lost {
		why := fmt.Sprintf("worker %q reconnected without it", w.id)
		if w.restored {
			// Its assignment, or its result, died with the old process.
			// A retry all the same: the action may be what brought the
			// process down (an action whose tmpfs pages no process
			// mapped made the OOM killer take `paddock up`), and, not
			// counted, it was run again after every restart, which it
			// brought down again, for as long as the farm was restarted.
			why = fmt.Sprintf("worker %q came back after the scheduler restarted without it", w.id)
		}
		c.requeueLost(now, e, why)
	}
	w.restored = false
	if w.draining {
		c.send(w.id, &workerpb.SchedulerMessage{Kind: &workerpb.SchedulerMessage_Drain{Drain: &workerpb.Drain{}}})
	}
	c.pumpWorker(now, w)
	c.pumpUnblocked(now)
	return w.gen
}

// reconcile compares what a registering worker holds with what the core
// has on it, and returns the operations it keeps: those it holds in the
// attempt the core knows of, and those it adopts (a lost dispatch). The
// worker is told to cancel every other one. An execution it holds in
// another attempt than the core's is not kept: the core's attempt is
// lost (Connect requeues it).
func (c *core) reconcile(now time.Time, w *worker, held []*workerpb.InHand) map[string]bool {
	inHand := map[string]bool{}
	var claims []*workerpb.InHand // of executions not on w: adopted, room allowing, after the rest
	for _, h := range held {
		e := w.running[h.OperationName]
		switch {
		case e == nil:
			claims = append(claims, h)
			continue
		case !e.cancelled && e.attempt == h.Attempt:
			inHand[h.OperationName] = true
			continue
		case !e.cancelled && h.Attempt == e.attempt+1:
			// A restart lost the records that requeued e and sent it
			// here again: adopt the attempt the worker holds.
			c.release(w, e)
			c.record(record{kind: recRequeue, at: now, name: e.id, retries: e.retries})
			c.enqueue(e, true)
			e.adoptable = true // it ran here: this worker's to take back
			if c.adopt(now, w, h) {
				inHand[e.id] = true
				continue
			}
		case e.cancelled && e.attempt == h.Attempt:
			// Cancelled: it stays on the worker, which is told (below)
			// and frees the slot when it gives the action up.
			inHand[e.id] = true
		}
		c.cancelOn(w, h.OperationName)
	}
	for _, h := range claims {
		if len(inHand) < w.capacity && c.adopt(now, w, h) {
			inHand[h.OperationName] = true
			continue
		}
		c.cancelOn(w, h.OperationName)
	}
	return inHand
}

// cancelOn tells w to stop an action it holds that the core does not want
// from it.
func (c *core) cancelOn(w *worker, name string) {
	c.send(w.id, &workerpb.SchedulerMessage{Kind: &workerpb.SchedulerMessage_Cancel{Cancel: &workerpb.Cancel{
		OperationName: name, Reason: "the scheduler no longer wants this action from this worker"}}})
}

// Kept returns, of the actions a worker listed in hand when it registered
// (held), those its session gen still runs: the same attempt, not
// cancelled, kept or adopted by Connect's reconciliation. The worker is
// told them in Registered.kept: for those, and only those, it may write
// the action cache, since the result it reports is the one the clients
// get; any other one may have run elsewhere meanwhile.
func (c *core) Kept(id string, gen uint64, held []*workerpb.InHand) []*workerpb.InHand {
	var kept []*workerpb.InHand
	for _, h := range held {
		if e := c.Reported(id, gen, h.OperationName, h.Attempt); e != nil && !e.cancelled {
			kept = append(kept, &workerpb.InHand{OperationName: h.OperationName, Attempt: h.Attempt})
		}
	}
	return kept
}

// adopt takes back a queued execution that a registering worker holds as
// the attempt after the last one the core knows of: the scheduler sent it
// just before a restart that lost the dispatch's record (assignments go
// out while their record is being written). The worker keeps running it,
// as if the record had been written. Only an execution queued since the
// recovery is adopted (adoptable), by a worker that serves its queue, is
// not paused, and has a slot for it: otherwise a worker that named any
// queued operation in Register.running would take it, past its routing,
// its instance names, its pause and its capacity.
func (c *core) adopt(now time.Time, w *worker, h *workerpb.InHand) bool {
	e := c.execs[h.OperationName]
	if e == nil || e.stage != repb.ExecutionStage_QUEUED || h.Attempt != e.attempt+1 ||
		!e.adoptable || w.paused || !w.serves(e.queue) {
		return false
	}
	e.queue.remove(e)
	c.countQueued(e.queue, -e.weight())
	c.record(record{kind: recAdopt, at: now, name: e.id, worker: w.id})
	c.start(now, w, e)
	c.note("action %s (%s): worker %q holds attempt %d, whose dispatch a restart forgot; adopted", e.key.action, e.id, w.id, h.Attempt)
	return true
}

func (c *core) unlinkQueues(w *worker) {
	for _, q := range w.queues {
		for i, qw := range q.workers {
			if qw == w {
				q.workers = append(q.workers[:i], q.workers[i+1:]...)
				break
			}
		}
	}
	w.queues = nil
}

// session returns the worker if gen is its current session.
func (c *core) session(id string, gen uint64) *worker {
	w := c.workers[id]
	if w == nil || w.gen != gen {
		return nil
	}
	return w
}

// Heartbeat extends a worker's lease. Every message counts as one.
func (c *core) Heartbeat(now time.Time, id string, gen uint64) {
	if w := c.session(id, gen); w != nil {
		w.lastSeen = now
	}
}

// Live reports whether gen is the worker's current session, with its
// stream open and its lease running: a worker that is really there, not
// one whose end the scheduler has yet to notice.
func (c *core) Live(now time.Time, id string, gen uint64) bool {
	w := c.session(id, gen)
	return w != nil && w.connected && now.Sub(w.lastSeen) < c.cfg.LeaseDuration
}

// Pause records whether a worker can run actions now, as its Heartbeat
// says: a paused worker (its runner or storage is down) gets no new work,
// so that it does not fail every action it is given; the actions it holds
// go on. It gets work again once it says so.
func (c *core) Pause(now time.Time, id string, gen uint64, paused bool, why string) {
	w := c.session(id, gen)
	if w == nil {
		return
	}
	if w.paused == paused {
		w.pauseReason = why // still paused, perhaps for another reason
		return
	}
	w.paused, w.pauseReason = paused, why
	c.notePause(now, w)
	if !paused {
		c.pumpWorker(now, w)
	}
}

// pauseNoteInterval is how often at most a worker's pauses and resumes
// reach the log: a worker flipping at every heartbeat wrote 1.3 million
// lines a minute.
const pauseNoteInterval = time.Minute

// notePause notes w's pause or resume, unless one was noted less than
// pauseNoteInterval ago; the next note counts those passed over, and
// Tick notes the state they left once the interval is up, so that the
// log's last word on a worker is true.
func (c *core) notePause(now time.Time, w *worker) {
	if !w.pauseNoted.IsZero() && now.Sub(w.pauseNoted) < pauseNoteInterval {
		w.pauseFlipsUnnoted++
		return
	}
	more := ""
	if w.pauseFlipsUnnoted > 0 {
		more = fmt.Sprintf(" (after %d pauses and resumes not logged since %s)", w.pauseFlipsUnnoted, w.pauseNoted.Format(time.RFC3339))
	}
	w.pauseNoted, w.pauseFlipsUnnoted = now, 0
	if w.paused {
		c.note("worker %q paused: it cannot run actions now (%s); no new work until it resumes%s", w.id, w.pauseReason, more)
		return
	}
	c.note("worker %q resumed: it can run actions again%s", w.id, more)
}

// Leave stops giving work to a worker that is shutting down, and answers
// with Drain so it knows every earlier assignment has reached it.
func (c *core) Leave(now time.Time, id string, gen uint64) {
	w := c.session(id, gen)
	if w == nil {
		return
	}
	w.lastSeen = now
	// One Drain answers a session's Leaving: a worker repeating Leaving
	// without reading its stream queued a Drain for each in its outbox,
	// 500 MB for 2.5 million of them.
	if !w.leaving {
		w.leaving = true
		c.send(w.id, &workerpb.SchedulerMessage{Kind: &workerpb.SchedulerMessage_Drain{Drain: &workerpb.Drain{}}})
	}
}

// Disconnect notes that a session's stream ended. The worker may reconnect
// within ReconnectGrace (and its lease) and finish what it holds.
func (c *core) Disconnect(now time.Time, id string, gen uint64) {
	if w := c.session(id, gen); w != nil {
		w.connected = false
		w.lostConn = now
	}
}

// Result completes the execution a worker reports, unless the report is
// stale (another attempt, another worker, or the execution was cancelled).
func (c *core) Result(now time.Time, id string, gen uint64, name string, attempt int32, resp *repb.ExecuteResponse) {
	w, e := c.takeRunning(now, id, gen, name, attempt)
	if e == nil {
		return
	}
	switch {
	case e.cancelled:
	case retryable(resp):
		// The worker could not run it through no fault of the action
		// (its runner died, say): retry it, counting the retry, as if
		// the worker had been lost.
		c.requeueLost(now, e, "worker "+id+" reported: "+resp.Status.GetMessage())
	default:
		c.finish(now, e, resp)
	}
	c.freed(now, w)
}

// retryable reports whether a worker's response says the action should run
// again elsewhere: UNAVAILABLE with no result (see docs/worker-protocol.md).
func retryable(resp *repb.ExecuteResponse) bool {
	return codes.Code(resp.GetStatus().GetCode()) == codes.Unavailable && resp.GetResult() == nil
}

// GiveBack requeues an execution the worker will not finish, without
// counting a retry.
func (c *core) GiveBack(now time.Time, id string, gen uint64, name string, attempt int32) {
	w, e := c.takeRunning(now, id, gen, name, attempt)
	if e == nil {
		return
	}
	if !e.cancelled {
		c.requeue(now, e)
	}
	c.freed(now, w)
}

// takeRunning removes from a current session the execution it reports on,
// if that report is not stale (another attempt, another worker).
func (c *core) takeRunning(now time.Time, id string, gen uint64, name string, attempt int32) (*worker, *execution) {
	w := c.session(id, gen)
	if w == nil {
		return nil, nil
	}
	w.lastSeen = now
	e := c.Reported(id, gen, name, attempt)
	if e == nil {
		return w, nil
	}
	c.release(w, e)
	return w, e
}

// Reported returns the execution a session's Result or GiveBack is
// about, or nil if the report is stale: the session is not the worker's
// current one, or the worker does not run that attempt (it was requeued
// and perhaps given to another worker). The core ignores a stale
// report. A cancelled execution is returned (its report frees the slot).
func (c *core) Reported(id string, gen uint64, name string, attempt int32) *execution {
	w := c.session(id, gen)
	if w == nil {
		return nil
	}
	if e := w.running[name]; e != nil && e.attempt == attempt {
		return e
	}
	return nil
}

func (c *core) freed(now time.Time, w *worker) {
	if w.draining && len(w.running) == 0 {
		c.fx.idle = append(c.fx.idle, w.id)
	}
	c.pumpWorker(now, w)
	c.pumpUnblocked(now)
}

// lostWorker is a worker to lose, and why.
type lostWorker struct {
	w   *worker
	why string
}

// hangUp is a worker whose session the scheduler ends, and the reason the
// worker is told.
type hangUp struct {
	worker, why string
}

// workerLoss is a worker lost, for whoever waited for it to become idle:
// the number of its actions requeued, a retry each.
type workerLoss struct {
	id       string
	requeued int
}

// lose forgets the workers ws and requeues the actions they held (a retry
// each), once every one of them is gone: an action requeued by the loss
// of one is never dispatched to another being lost in the same tick, which
// cost it a retry per worker lost at once (every worker, after a stall).
// An operator's drain of a lost worker stays in c.drained.
func (c *core) lose(now time.Time, ws ...lostWorker) {
	type held struct {
		e   *execution
		why string
	}
	var requeue []held
	for _, l := range ws {
		w := l.w
		c.note("%s: worker lost with %d action(s)", l.why, len(w.running))
		delete(c.workers, w.id)
		c.unlinkQueues(w)
		if w.connected {
			c.fx.hangUp = append(c.fx.hangUp, hangUp{w.id, l.why + ": the scheduler declared this worker lost and requeued its actions; register again"})
		}
		n := len(requeue)
		for _, e := range sortedValues(w.running) {
			c.release(w, e)
			if !e.cancelled {
				requeue = append(requeue, held{e, l.why})
			}
		}
		w.running = nil
		c.fx.lost = append(c.fx.lost, workerLoss{id: w.id, requeued: len(requeue) - n})
	}
	for _, h := range requeue {
		c.requeueLost(now, h.e, h.why)
	}
	c.pumpUnblocked(now)
}

// Workers describes the known workers.
func (c *core) Workers() []*workerpb.WorkerInfo {
	out := make([]*workerpb.WorkerInfo, 0, len(c.workers))
	for _, w := range sortedValues(c.workers) {
		out = append(out, workerInfo(w))
	}
	return out
}
