package scheduler

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
)

// This file holds the retention of completed operations: each stays
// answerable for CompletedRetention, and the responses they hold together
// are bounded by MaxCompletedBytes, which tenants share: past it, the
// tenant holding the most gives up its oldest first.

// retainedShare is one tenant's part of the retained operations.
type retainedShare struct {
	bytes int64        // respBytes of its operations not released
	fifo  []*operation // its retained operations in completion order; released ones are skipped at the front
}

// retain keeps the completed op for CompletedRetention, its response
// counted against MaxCompletedBytes once for all the operations of one
// tenant that share it: the waiters of one execution, completed one after
// another, hold one response. Counted once per waiter, twenty clients
// following an action with a 4 MB result took 80 MB of the 64 MiB bound,
// which then forgot all but one of them before they could read their
// result. The count sits on the first of them not released (unretain).
func (c *core) retain(op *operation) {
	t := c.tenantOf(op.owner)
	op.respBytes, op.released, op.nextSharer = 0, false, nil
	if n := len(t.retained.fifo); n > 0 && t.retained.fifo[n-1].response == op.response && !t.retained.fifo[n-1].released {
		t.retained.fifo[n-1].nextSharer = op
	} else {
		op.respBytes = int64(proto.Size(op.response))
	}
	c.completedBytes += op.respBytes
	t.retained.bytes += op.respBytes
	c.completed = append(c.completed, op)
	t.retained.fifo = append(t.retained.fifo, op)
}

// unretain takes a retained op out of the counts, once, when it is
// forgotten or deleted. Its response's count passes to the next operation
// sharing it that is still retained, if any (its nextSharer stays, so
// that a later unretain walks past it).
func (c *core) unretain(op *operation) {
	if op.released {
		return
	}
	op.released = true
	next := op.nextSharer
	for next != nil && next.released {
		next = next.nextSharer
	}
	if next != nil {
		next.respBytes, op.respBytes = op.respBytes, 0
	}
	t := c.tenantOf(op.owner)
	c.completedBytes -= op.respBytes
	t.retained.bytes -= op.respBytes
	for len(t.retained.fifo) > 0 && t.retained.fifo[0].released {
		t.retained.fifo[0] = nil
		t.retained.fifo = t.retained.fifo[1:]
	}
}

// boundCompleted forgets completed operations, before their retention is
// up, while the responses retained take more than MaxCompletedBytes: the
// oldest of the tenant that holds the most. One tenant repeating cache
// hits of a large result then forgets its own, where the oldest of all
// were other tenants' (an outside probe's 20 hits of a 4 MB result in a
// second made every other tenant's finished operations NOT_FOUND to
// WaitExecution). Operations sharing a response go together (dropping one
// frees nothing while the others hold it), and those of the newest
// response are always kept. Each is deleted with a recDelete record, so
// that a replay does the same whatever the config then says (a replay
// itself forgets nothing here). It runs as a transaction's effects are
// taken, after the transaction's own records.
func (c *core) boundCompleted() {
	c.trimCompleted()
	if c.replaying || len(c.completed) == 0 {
		return
	}
	newest := c.completed[len(c.completed)-1]
	for c.completedBytes > c.cfg.MaxCompletedBytes {
		t := c.heaviestRetainer(newest)
		if t == nil {
			break
		}
		for op := t.retained.fifo[0]; op != nil; op = op.nextSharer {
			switch {
			case op.released:
			case c.ops[op.name] == op:
				c.fx.forgotten = append(c.fx.forgotten, op.view())
				_ = c.Delete(newest.completedAt, op.name) // it exists; Delete unretains it
			default:
				c.unretain(op)
			}
			// Its entry stays in the completion order until its
			// retention is up, and must not keep the response.
			op.response = nil
		}
	}
	c.trimCompleted()
}

// heaviestRetainer returns the tenant whose retained responses take the
// most bytes (of equals, the first by name, so that the choice does not
// depend on map order), of those whose oldest are not newest's; nil if
// none. It runs at every step of boundCompleted: no sorting of tenants.
func (c *core) heaviestRetainer(newest *operation) *tenant {
	var best *tenant
	for _, t := range c.tenants {
		r := &t.retained
		if len(r.fifo) == 0 || r.fifo[0].owner == newest.owner && r.fifo[0].response == newest.response {
			continue
		}
		if best == nil || r.bytes > best.retained.bytes || r.bytes == best.retained.bytes && t.name < best.name {
			best = t
		}
	}
	return best
}

// trimCompleted drops released operations from the front of the
// completion order.
func (c *core) trimCompleted() {
	i := 0
	for ; i < len(c.completed) && c.completed[i].released; i++ {
		c.completed[i] = nil
	}
	c.completed = c.completed[i:]
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
		c.unretain(op)
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
		c.unretain(op)
	}
	// Their entries leave the retention order from its front, with those
	// of operations deleted before (which the live core had dropped too).
	i := 0
	for ; i < len(c.completed) && c.ops[c.completed[i].name] != c.completed[i]; i++ {
		c.unretain(c.completed[i])
		c.completed[i] = nil
	}
	c.completed = c.completed[i:]
	return nil
}
