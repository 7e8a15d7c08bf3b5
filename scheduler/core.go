package scheduler

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/auth"
	"github.com/paddock-build/paddock/digest"
)

// core is the scheduler's decision logic: a state machine with no locks,
// goroutines or I/O. Each method takes the current time and an event, changes
// the state, and records what must happen outside (effects), which the
// caller collects with takeEffects. The caller serialises all calls.
type core struct {
	cfg               Config
	ops               map[string]*operation
	byOwner           map[string]*opIndex   // ops by owner, in name order: ListOperations reads one tenant's (addOp, dropOp)
	execs             map[string]*execution // live (queued or executing, not cancelled)
	inflight          map[dedupKey]*execution
	queues            map[string]*queue
	workers           map[string]*worker
	queuedPerInstance map[string]int
	tenants           map[string]*tenant
	limits            map[string]auth.Limits // by tenant, from the auth policy
	lastTenant        string                 // whose execution was dispatched last: tenants take turns after it
	unblocked         []*tenant              // came back under max_running; see pumpUnblocked
	completed         []*operation           // completion order, for retention
	completedBytes    int64                  // their responses' encoded sizes (core_time.go)
	avoided           map[string]*execution  // queued executions that avoid a worker, by id (core_requeue.go)
	fx                effects
	peaks             peaks // of the maps that grow with the load (core_shrink.go)
	// replaying is set while a journal is replayed: limits that were
	// checked when a record was written are not checked again.
	replaying bool
	// forgotByTime holds, during a replay, the operations that expiry
	// records older than version 4 forgot by the retention in force now
	// (replayExpire); nil otherwise.
	forgotByTime map[string]bool
	// drained holds the ids of the workers an operator drained, until
	// undrained. A drain is the operator's word about a worker id, not
	// about one registration of it: a worker lost past reconnect_grace
	// or its lease is forgotten (lose), and must not come back undrained
	// when it registers again (Connect applies the set). Drain refuses
	// an id not registered, so the set holds only ids that were. Not
	// journalled: a restart undrains every worker (docs/scheduler.md).
	drained map[string]bool
}

// effects are the decisions of the core that its caller carries out.
type effects struct {
	// dispatch sends an assignment to a worker's current session.
	dispatch []workerMessage
	// published names operations whose state changed (watchers wake up).
	published []string
	// idle names draining workers that became idle.
	idle []string
	// lost names the workers declared lost, with the actions they held:
	// whoever waits for one to become idle stops waiting, told it was
	// lost rather than drained, its actions requeued.
	lost []workerLoss
	// undrained names workers an operator undrained: whoever waits for
	// them to become idle stops waiting.
	undrained []string
	// hangUp names workers whose session must end, and why: they were
	// declared lost while their stream was still open, and must register
	// again.
	hangUp []hangUp
	// forgotten are the completed operations max_completed_bytes forgot.
	forgotten []opView
	// notes are notable decisions, for the operator's log.
	notes []string
	// retries counts executions requeued after a lost worker, for metrics.
	retries int
	// records are the durable state changes behind these effects, in
	// order; with a journal they are written before the effects are
	// carried out.
	records []record
}

// workerMessage is a message for a worker's current session.
type workerMessage struct {
	worker string
	gen    uint64 // the session it is for
	msg    *workerpb.SchedulerMessage
}

// submission is a validated Execute request as the core needs it.
type submission struct {
	name      string
	instance  string
	owner     string // tenant that submitted it ("" without an auth policy)
	action    digest.Digest
	cacheable bool
	// skipCacheLookup is ExecuteRequest.skip_cache_lookup: the client
	// wants a result that was not visible before it asked, so it may
	// join an identical execution only while that one is queued (see
	// joins).
	skipCacheLookup bool
	priority        int32
	invocation      string
	queueKey        string
	routing         []*workerpb.Property
	spec            actionSpec
}

// registration is a worker's Register message, as the core needs it.
type registration struct {
	id        string
	platform  []*workerpb.Property
	capacity  int
	instances []string
	labels    map[string]string
	running   []*workerpb.InHand
	// paused and pauseReason are Register.paused and pause_reason.
	paused      bool
	pauseReason string
}

func newCore(cfg Config) *core { return newCoreWithLimits(cfg, nil) }

// newCoreWithLimits is newCore with tenants' limits (read-only).
func newCoreWithLimits(cfg Config, limits map[string]auth.Limits) *core {
	return &core{
		limits:            limits,
		cfg:               cfg,
		ops:               map[string]*operation{},
		byOwner:           map[string]*opIndex{},
		execs:             map[string]*execution{},
		inflight:          map[dedupKey]*execution{},
		queues:            map[string]*queue{},
		workers:           map[string]*worker{},
		queuedPerInstance: map[string]int{},
		tenants:           map[string]*tenant{},
		avoided:           map[string]*execution{},
		drained:           map[string]bool{},
	}
}

func (c *core) takeEffects() effects {
	c.boundCompleted()
	fx := c.fx
	c.fx = effects{}
	return fx
}

// Execute starts an operation: joins an identical cacheable execution in
// flight (see joins), or queues a new one. Fails with RESOURCE_EXHAUSTED
// when the instance, or the submitting tenant, has too many queued
// executions. Joining an execution in flight queues nothing, so it is
// never refused and counts nowhere: the execution counts against the
// tenant that queued it.
func (c *core) Execute(now time.Time, s submission) (*operation, error) {
	op := &operation{name: s.name, instance: s.instance, owner: s.owner, action: s.action, queuedAt: now}
	key := dedupKey{s.instance, s.owner, s.action}
	same := c.inflight[key]
	if s.cacheable && same != nil && same.joins(s) {
		if err := c.join(now, op, same, s); err != nil {
			return nil, err
		}
		return op, nil
	}
	// Each queued action counts its weight: one, or more for a large
	// platform and RequestMetadata (queuedUnitBytes); w counts as many.
	w, heavy := specWeight(s.spec), ""
	if w > 1 {
		heavy = fmt.Sprintf(" (this one counts as %d: its platform and RequestMetadata take over %d bytes)", w, queuedFreeBytes)
	}
	if max := c.cfg.MaxQueuedPerInstance; !c.replaying && overQueued(c.queuedPerInstance[s.instance], w, max) {
		return nil, status.Errorf(codes.ResourceExhausted, "instance %q has %d queued actions, and this one would pass the configured maximum of %d (max_queued_per_instance)%s", s.instance, c.queuedPerInstance[s.instance], max, heavy)
	}
	t := c.tenantOf(s.owner)
	if max := t.limits.MaxQueued; !c.replaying && overQueued(t.queued, w, max) {
		return nil, status.Errorf(codes.ResourceExhausted, "tenant %q has %d queued actions, and this one would pass its max_queued of %d in the auth policy%s; retry when some have started", s.owner, t.queued, max, heavy)
	}
	// Without a max_queued of its own, a tenant (every client, without a
	// policy) has max_queued_per_instance in all its instance names
	// together: a client may name any number of instances, and each
	// queued action holds a few KiB of the scheduler's memory.
	if max := c.cfg.MaxQueuedPerInstance; t.limits.MaxQueued <= 0 && !c.replaying && overQueued(t.queued, w, max) {
		return nil, status.Errorf(codes.ResourceExhausted, "%s has %d queued actions in all its instance names, and this one would pass the configured maximum of %d (max_queued_per_instance, which bounds a tenant without max_queued too)%s; retry when some have started", tenantText(s.owner), t.queued, max, heavy)
	}
	e := &execution{
		id:        s.name,
		key:       key,
		cacheable: s.cacheable,
		// With an identical execution in flight here, s is a
		// skip_cache_lookup request it could not join: that one stays
		// the one later Executes join.
		private:    s.cacheable && same != nil,
		spec:       s.spec,
		invocation: s.invocation,
		priority:   s.priority,
		queuedAt:   now,
		waiters:    []*operation{op},
	}
	op.exec = e
	c.addOp(op)
	e.queue = c.queue(t, s.queueKey, s.instance, s.routing)
	c.addExec(e)
	if s.cacheable && !e.private {
		c.inflight[key] = e
	}
	c.enqueue(e, false)
	c.record(record{kind: recExecute, at: now, sub: &s})
	c.pumpQueue(now, e.queue)
	return op, nil
}

// addOp adds op to the operations, and to its owner's index. Every
// operation comes in here (Execute, a join, a cache hit, a restore or a
// replay of either), so the index cannot miss one.
func (c *core) addOp(op *operation) {
	if old := c.ops[op.name]; old != nil {
		c.dropOp(old)
	}
	c.ops[op.name] = op
	if !op.done {
		c.tenantOf(op.owner).waiting++
	}
	x := c.byOwner[op.owner]
	if x == nil {
		x = &opIndex{}
		c.byOwner[op.owner] = x
	}
	x.insert(op)
}

// dropOp forgets op. Every operation goes out here (Delete, expiry, the
// bound on completed responses, and their replays).
func (c *core) dropOp(op *operation) {
	delete(c.ops, op.name)
	if !op.done {
		c.tenantOf(op.owner).waiting--
	}
	if x := c.byOwner[op.owner]; x != nil {
		if x.remove(op); x.len() == 0 {
			delete(c.byOwner, op.owner)
		}
	}
}

// AddCompleted records an operation that completed without running (an
// action cache hit), so WaitExecution and GetOperation know it.
func (c *core) AddCompleted(now time.Time, name, instance, owner string, action digest.Digest, resp *repb.ExecuteResponse) *operation {
	op := &operation{name: name, instance: instance, owner: owner, action: action, queuedAt: now}
	c.addOp(op)
	c.completeOp(now, op, resp)
	c.record(record{kind: recCached, at: now, name: name, instance: instance, owner: owner, action: action, resp: resp})
	return op
}

// Operation returns an operation's current state.
func (c *core) Operation(name string) (opView, bool) {
	op := c.ops[name]
	if op == nil {
		return opView{}, false
	}
	return op.view(), true
}

// queue returns t's queue for a submission's queue key, creating it.
func (c *core) queue(t *tenant, key, instance string, routing []*workerpb.Property) *queue {
	id := queueID(t.name, key)
	q := c.queues[id]
	if q == nil {
		q = &queue{key: id, instance: instance, routing: routing, tenant: t}
		c.queues[id] = q
		i, _ := slices.BinarySearchFunc(t.queues, id, func(q *queue, id string) int { return cmp.Compare(q.key, id) })
		t.queues = slices.Insert(t.queues, i, q) // in key order, as a restore builds it
		for _, w := range sortedValues(c.workers) {
			if w.serves(q) {
				q.workers = append(q.workers, w)
				j, _ := slices.BinarySearchFunc(w.queues, id, func(q *queue, id string) int { return cmp.Compare(q.key, id) })
				w.queues = slices.Insert(w.queues, j, q) // key order: see nextQueue
			}
		}
	}
	return q
}

func (c *core) enqueue(e *execution, front bool) {
	e.stage = repb.ExecutionStage_QUEUED
	e.worker = nil
	e.queue.push(e, front)
	c.countQueued(e.queue, e.weight())
}

// pumpQueue gives q's executions to the workers serving it while they have
// room.
func (c *core) pumpQueue(now time.Time, q *queue) {
	n := len(q.workers)
	for i := 0; i < n && q.size > 0; i++ {
		w := q.workers[(q.rr+i)%n]
		c.pumpWorker(now, w)
	}
	if n > 0 {
		q.rr = (q.rr + 1) % n
	}
}

// pumpWorker fills a worker's free slots from the queues it serves. A
// worker that left a queue alone because its next execution avoided it
// (core_requeue.go) is pumped again once w has taken that execution.
func (c *core) pumpWorker(now time.Time, w *worker) {
	var passedOver []string
	for w.canTake() {
		q := c.nextQueue(w)
		if q == nil {
			break
		}
		e := q.pop()
		if e == nil {
			break
		}
		c.countQueued(q, -e.weight())
		c.record(record{kind: recDispatch, at: now, name: e.id, worker: w.id})
		if e.avoid != "" && e.avoid != w.id {
			passedOver = append(passedOver, e.avoid)
		}
		c.start(now, w, e)
		c.sendAssignment(w, e)
	}
	for _, id := range passedOver {
		if o := c.workers[id]; o != nil {
			c.pumpWorker(now, o)
		}
	}
}

// start makes e, just taken from its queue, the next attempt on w.
func (c *core) start(now time.Time, w *worker, e *execution) {
	e.stage = repb.ExecutionStage_EXECUTING
	e.worker = w
	e.attempt++
	e.adoptable = false
	e.startedAt = now
	c.forgetAvoid(e)
	c.occupy(w, e)
	c.lastTenant = e.queue.tenant.name
	c.publish(e)
}

func (c *core) sendAssignment(w *worker, e *execution) {
	a := &workerpb.Assignment{
		OperationName:   e.id,
		Attempt:         e.attempt,
		InstanceName:    e.key.instance,
		DigestFunction:  int32(e.key.action.Function()),
		ActionDigest:    protoDigest(e.key.action),
		CommandDigest:   protoDigest(e.spec.command),
		InputRootDigest: protoDigest(e.spec.inputRoot),
		Platform:        e.spec.platform,
		Timeout:         durationpb.New(e.spec.timeout),
		QueuedTimestamp: timestamppb.New(e.queuedAt),
		DoNotCache:      e.spec.doNotCache,
		RequestMetadata: e.spec.requestMetadata,
		Tenant:          e.queue.tenant.name,
	}
	c.send(w.id, &workerpb.SchedulerMessage{Kind: &workerpb.SchedulerMessage_Assignment{Assignment: a}})
}

func (c *core) send(worker string, m *workerpb.SchedulerMessage) {
	var gen uint64
	if w := c.workers[worker]; w != nil {
		gen = w.gen
	}
	c.fx.dispatch = append(c.fx.dispatch, workerMessage{worker: worker, gen: gen, msg: m})
}

func (c *core) publish(e *execution) {
	for _, op := range e.waiters {
		c.fx.published = append(c.fx.published, op.name)
	}
}

// finish completes an execution and every operation waiting for it.
func (c *core) finish(now time.Time, e *execution, resp *repb.ExecuteResponse) {
	r := record{kind: recFinish, at: now, name: e.id, resp: resp}
	if e.worker != nil {
		r.worker = e.worker.id
	}
	c.record(r)
	c.dropExec(e)
	if c.inflight[e.key] == e {
		delete(c.inflight, e.key)
	}
	e.stage = repb.ExecutionStage_COMPLETED
	for _, op := range e.waiters {
		op.exec = nil
		if e.worker != nil {
			op.worker, op.startedAt = e.worker.id, e.startedAt
		}
		c.completeOp(now, op, resp)
	}
	e.waiters = nil
}

func (c *core) completeOp(now time.Time, op *operation, resp *repb.ExecuteResponse) {
	if !op.done {
		c.tenantOf(op.owner).waiting--
	}
	op.done = true
	op.exec = nil
	op.response = resp
	op.completedAt = now
	c.retain(op)
	c.fx.published = append(c.fx.published, op.name)
}

func (c *core) note(format string, args ...any) {
	c.fx.notes = append(c.fx.notes, fmt.Sprintf(format, args...))
}

// sortedValues returns m's values in key order. The core never depends on
// map order, so a replayed journal, or a test, always sees one sequence of
// decisions.
func sortedValues[K cmp.Ordered, V any](m map[K]V) []V {
	out := make([]V, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, m[k])
	}
	return out
}

// durationOrNil is a helper for Registered.
func durationOrNil(d time.Duration) *durationpb.Duration {
	if d <= 0 {
		return nil
	}
	return durationpb.New(d)
}
