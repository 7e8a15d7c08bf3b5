package scheduler

import (
	"fmt"
	"sort"
	"time"

	"github.com/paddock-build/paddock/auth"
)

// tenant is the scheduler's account of one tenant's work: how many of its
// executions are queued and how many hold a worker slot, against its
// limits, and the queues its executions wait in. Owned by core. Without an
// auth policy every execution belongs to the tenant "".
//
// Fairness. Each queue belongs to one tenant (its key starts with the
// tenant's name), so a worker with a free slot chooses a tenant first:
// the first one after the tenant served last (core.lastTenant), in name
// order and wrapping around, that has a queued execution this worker can
// run and is under its max_running. Among that tenant's queues it takes
// the best priority, as it always did; inside a queue, priorities, then
// invocations taking turns, then first in first out (queue.go). So one
// tenant's thousand actions cannot hold back another's ten, and priority
// orders a tenant's own actions but does not let one tenant overtake
// another.
type tenant struct {
	name    string
	limits  auth.Limits
	queued  int      // queued executions, in any of its queues
	running int      // executions holding a worker slot (cancelled ones too, until their worker reports)
	waiting int      // its operations not done: of its executions, and joined to identical ones (joinBound)
	queues  []*queue // its queues, in key order
	// retained is its share of the completed operations retained.
	retained retainedShare
}

// tenantOf returns the account of the named tenant, creating it.
func (c *core) tenantOf(name string) *tenant {
	t := c.tenants[name]
	if t == nil {
		t = &tenant{name: name, limits: c.limits[name]}
		c.tenants[name] = t
	}
	return t
}

// mayRun reports whether the tenant is under its max_running.
func (t *tenant) mayRun() bool {
	return t.limits.MaxRunning <= 0 || t.running < t.limits.MaxRunning
}

// queueID is a queue's key in core.queues: the tenant, then the queue key
// of the submission (instance name and routing properties). Tenant names
// hold no NUL, so tenants' keys never collide.
func queueID(tenant, key string) string { return tenant + "\x00" + key }

// queuedFreeBytes and queuedUnitBytes weigh a queued action against
// max_queued and max_queued_per_instance (weight): a queued action holds
// about 3 KiB of the scheduler's memory, and about eight times the bytes
// of its platform and RequestMetadata besides (its queue key, its
// journal records and snapshots, the garbage collector's headroom).
// Counted one each, 2,000 queued actions with 60 KB platforms and 11 KB
// headers, within every per-action bound, took `paddock up` to 1.2 GB
// and its journal to 327 MB. An action counts one more for each further
// 384 bytes (3 KiB / 8) past the first KiB those take, which Bazel's
// (a few hundred bytes) never reach.
const (
	queuedFreeBytes = 1 << 10
	queuedUnitBytes = 384
)

// weight is how many queued actions e counts as (queuedUnitBytes).
func (e *execution) weight() int { return specWeight(e.spec) }

func specWeight(s actionSpec) int {
	n := len(s.requestMetadata)
	for _, p := range s.platform {
		n += len(p.Name) + len(p.Value)
	}
	return 1 + max(0, n-queuedFreeBytes)/queuedUnitBytes
}

// overQueued reports whether w more queued actions would take queued
// past max (0: no bound). An action heavier than the bound itself is
// queued alone, rather than never.
func overQueued(queued, w, max int) bool {
	return max > 0 && queued > 0 && queued+w > max
}

// countQueued adds n to the queued counts of q's instance and tenant:
// an execution's weight, or minus it.
func (c *core) countQueued(q *queue, n int) {
	if c.queuedPerInstance[q.instance] += n; c.queuedPerInstance[q.instance] == 0 {
		delete(c.queuedPerInstance, q.instance) // instance names are the clients'
	}
	q.tenant.queued += n
}

// occupy puts e on w: it holds one of w's slots and counts against its
// tenant's max_running.
func (c *core) occupy(w *worker, e *execution) {
	w.running[e.id] = e
	e.queue.tenant.running++
}

// release frees e's slot on w. A tenant that drops below its max_running
// with executions queued is noted, so pumpUnblocked gives them a worker.
func (c *core) release(w *worker, e *execution) {
	if w.running[e.id] != e {
		return
	}
	delete(w.running, e.id)
	t := e.queue.tenant
	t.running--
	if t.limits.MaxRunning > 0 && t.running == t.limits.MaxRunning-1 && t.queued > 0 {
		c.unblocked = append(c.unblocked, t)
	}
}

// pumpUnblocked dispatches the queued executions of tenants that came
// back under their max_running: the slot freed may be on a worker that
// cannot run them, while another that can had skipped them.
func (c *core) pumpUnblocked(now time.Time) {
	for len(c.unblocked) > 0 {
		t := c.unblocked[0]
		c.unblocked = c.unblocked[1:]
		for _, q := range t.queues {
			if q.size > 0 && t.mayRun() {
				c.pumpQueue(now, q)
			}
		}
	}
	c.unblocked = nil
}

// nextQueue is the queue w takes its next execution from, or nil: the
// first tenant in turn with work for w (see tenant), then that tenant's
// queue whose next execution has the best priority; ties between queues
// rotate, so equal queues share the worker. With one tenant this is the
// best priority over all of w's queues, as before tenants took turns.
//
// w.queues is in key order, so each tenant's queues are together and in
// name order: a binary search finds where the next turn starts, and the
// scan from there passes only queues with nothing to give (empty, or
// their tenant at max_running). The cost of a dispatch does not grow
// with the queued executions, nor with the busy tenants.
func (c *core) nextQueue(w *worker) *queue {
	n := len(w.queues)
	if n == 0 {
		return nil
	}
	// Queues of lastTenant have keys lastTenant+"\x00"+…; those of the
	// tenants after it in name order sort after lastTenant+"\x01" (tenant
	// names hold no byte below '-').
	after := c.lastTenant + "\x01"
	start := sort.Search(n, func(i int) bool { return w.queues[i].key >= after })
	var best *queue
	for i := 0; i < n; i++ {
		q := w.queues[(start+i)%n]
		if q.size > 0 && q.tenant.mayRun() {
			// nil only if every queue of the tenant with work passes w
			// over (core_requeue.go): the next tenant's turn then.
			if best = c.bestOfTenant(w, (start+i)%n); best != nil {
				break
			}
		}
	}
	if n > 1 {
		w.rr = (w.rr + 1) % n
	}
	return best
}

// bestOfTenant returns, among the queues of w.queues[at]'s tenant, the
// one whose next execution has the best priority, the scan starting at
// the worker's rotation. A queue whose next execution avoids w, for
// another worker to take, is left alone (core.passesOver).
func (c *core) bestOfTenant(w *worker, at int) *queue {
	t := w.queues[at].tenant
	lo, hi := at, at+1
	for lo > 0 && w.queues[lo-1].tenant == t {
		lo--
	}
	for hi < len(w.queues) && w.queues[hi].tenant == t {
		hi++
	}
	group := w.queues[lo:hi]
	var best *queue
	var bestP int32
	for j := range group {
		q := group[(w.rr+j)%len(group)]
		if q.size == 0 || c.passesOver(w, q) {
			continue
		}
		if p, ok := q.best(); ok && (best == nil || p < bestP) {
			best, bestP = q, p
		}
	}
	return best
}

// tenantText names a tenant in a message: "" is every client of a farm
// without an auth policy.
func tenantText(name string) string {
	if name == "" {
		return "this farm's clients"
	}
	return fmt.Sprintf("tenant %q", name)
}

// Joins are bounded per tenant: an Execute merged into an identical
// execution in flight queues nothing and is not counted against
// max_queued, but its operation lives until the execution ends, or, if
// no client follows it, for abandoned_grace. An outside probe re-executed
// one queued action 283,000 times in 150 s, cancelling each stream once
// it had the operation's name, and took `paddock up` from 53 MB to
// 926 MB. A tenant may hold joinsPerExecution operations for each
// execution it has queued or running, and joinsFree besides: dozens of
// clients building the same commit join each other's actions well
// within it.
const (
	joinsPerExecution = 256
	joinsFree         = 1024
)

// joinBound is the most operations not done that t may hold for a join
// to be accepted.
func (t *tenant) joinBound() int {
	return joinsPerExecution*(t.queued+t.running) + joinsFree
}
