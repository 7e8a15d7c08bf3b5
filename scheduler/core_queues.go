package scheduler

import "slices"

// The lifetime of queues: a queue exists while it has live executions.

// addExec makes e live, counted in its queue.
func (c *core) addExec(e *execution) {
	c.execs[e.id] = e
	e.queue.live++
}

// dropExec ends e's life (it completed, or nobody waits for it), and
// drops its queue if e was the queue's last. A cancelled execution that
// its worker still runs keeps its queue pointer for its tenant's counts
// (release); a later Execute with the same key makes a new queue.
func (c *core) dropExec(e *execution) {
	if c.execs[e.id] != e {
		return
	}
	delete(c.execs, e.id)
	if e.queue.live--; e.queue.live == 0 {
		c.dropQueue(e.queue)
	}
}

// dropQueue forgets an empty queue: from the core, its tenant and the
// workers that serve it.
func (c *core) dropQueue(q *queue) {
	delete(c.queues, q.key)
	q.tenant.queues = slices.DeleteFunc(q.tenant.queues, func(x *queue) bool { return x == q })
	for _, w := range q.workers {
		w.queues = slices.DeleteFunc(w.queues, func(x *queue) bool { return x == q })
	}
	q.workers = nil
}
