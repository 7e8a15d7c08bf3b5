package scheduler

import (
	"fmt"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"
)

// restore loads a snapshot's state into an empty core. Executions that ran
// on a worker go back to that worker as a placeholder (see recovered).
func (c *core) restore(st *coreState) error {
	for _, qs := range st.Queues {
		t := c.tenantOf(qs.Tenant)
		q := &queue{key: qs.Key, instance: qs.Instance, routing: fromPropStates(qs.Routing), tenant: t}
		c.queues[qs.Key] = q
		t.queues = append(t.queues, q) // st.Queues is in key order
	}
	c.lastTenant = st.LastTenant
	for _, es := range st.Execs {
		e, err := c.restoreExec(es)
		if err != nil {
			return err
		}
		c.addExec(e)
		if e.cacheable && !e.private {
			c.inflight[e.key] = e
		}
	}
	// Snapshots written before queues were dropped hold empty ones.
	for _, q := range sortedValues(c.queues) {
		if q.live == 0 {
			c.dropQueue(q)
		}
	}
	restored := make([]*operation, 0, len(st.Ops))
	for _, os := range st.Ops {
		op, err := restoreOp(os)
		if err != nil {
			return err
		}
		if os.SameAs > 0 {
			op.response = restored[os.SameAs-1].response // an earlier one (readShared)
		}
		restored = append(restored, op)
		if os.Exec != "" {
			if op.exec = c.execs[os.Exec]; op.exec == nil {
				return fmt.Errorf("operation %s waits for execution %s, which the state lacks", os.Name, os.Exec)
			}
		}
		c.addOp(op)
	}
	for _, es := range st.Execs {
		e := c.execs[es.ID]
		for _, name := range es.Waiters {
			op := c.ops[name]
			if op == nil || op.exec != e {
				return fmt.Errorf("execution %s: waiter %s is not an operation waiting for it", es.ID, name)
			}
			e.waiters = append(e.waiters, op)
		}
	}
	for _, qs := range st.Queues {
		if err := c.restoreQueue(c.queues[qs.Key], qs); err != nil {
			return err
		}
	}
	for _, e := range c.execs {
		if e.stage == repb.ExecutionStage_QUEUED && e.bucket == nil {
			return fmt.Errorf("execution %s is queued but in no queue", e.id)
		}
	}
	for _, name := range st.Completed {
		op := c.ops[name]
		if op == nil || !op.done {
			return fmt.Errorf("completed operation %s is not a done operation of the state", name)
		}
		c.retain(op)
	}
	return nil
}

func (c *core) restoreExec(es execState) (*execution, error) {
	action, err1 := es.Action.digest()
	cmd, err2 := es.Command.digest()
	root, err3 := es.InputRoot.digest()
	for _, err := range []error{err1, err2, err3} {
		if err != nil {
			return nil, fmt.Errorf("execution %s: %w", es.ID, err)
		}
	}
	e := &execution{
		id: es.ID, cacheable: es.Cacheable, private: es.Private,
		spec: actionSpec{command: cmd, inputRoot: root, platform: fromPropStates(es.Platform),
			timeout: es.Timeout, doNotCache: es.DoNotCache, requestMetadata: es.RequestMetadata,
			workingDir: es.WorkingDir, workingDirKnown: es.WorkingDirKnown},
		invocation: es.Invocation, priority: es.Priority, stage: repb.ExecutionStage_QUEUED,
		attempt: es.Attempt, retries: es.Retries, queuedAt: fromNanos(es.QueuedAt), startedAt: fromNanos(es.StartedAt),
	}
	if e.queue = c.queues[es.QueueKey]; e.queue == nil {
		return nil, fmt.Errorf("execution %s: its queue is not in the state", es.ID)
	}
	e.key = dedupKey{es.Instance, e.queue.tenant.name, action}
	if es.Executing {
		e.stage = repb.ExecutionStage_EXECUTING
		e.worker = c.placeholder(es.Worker)
		c.occupy(e.worker, e)
	}
	return e, nil
}

func restoreOp(os opState) (*operation, error) {
	action, err := os.Action.digest()
	if err != nil {
		return nil, fmt.Errorf("operation %s: %w", os.Name, err)
	}
	op := &operation{name: os.Name, instance: os.Instance, owner: os.Owner, action: action, queuedAt: fromNanos(os.QueuedAt),
		done: os.Done, completedAt: fromNanos(os.CompletedAt), worker: os.Worker, startedAt: fromNanos(os.StartedAt)}
	if os.Response != nil {
		op.response = &repb.ExecuteResponse{}
		if err := proto.Unmarshal(os.Response, op.response); err != nil {
			return nil, fmt.Errorf("operation %s: response: %w", os.Name, err)
		}
	}
	return op, nil
}

// restoreQueue rebuilds q's priority levels and round-robin rings exactly,
// and counts the queued executions.
func (c *core) restoreQueue(q *queue, qs queueState) error {
	for _, bs := range qs.Buckets {
		b := &bucket{priority: bs.Priority, next: bs.Next, byInv: map[string]*invocationFIFO{}}
		for _, fs := range bs.Ring {
			f := &invocationFIFO{id: fs.ID}
			for _, id := range fs.Execs {
				e := c.execs[id]
				if e == nil || e.queue != q || e.stage != repb.ExecutionStage_QUEUED || e.bucket != nil {
					return fmt.Errorf("queue %q: entry %s is not a queued execution of it", q.key, id)
				}
				f.entries = append(f.entries, queueEntry{e: e, gen: e.qgen})
				f.live++
				e.bucket = b
				b.size++
				q.size++
				c.countQueued(q, e.weight())
			}
			b.byInv[f.id] = f
			b.ring = append(b.ring, f)
			if f.live == 0 {
				b.empty++
			}
		}
		q.buckets = append(q.buckets, b)
	}
	return nil
}
