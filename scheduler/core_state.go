package scheduler

import (
	"fmt"
	"slices"
	"strings"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/digest"
)

// coreState is the core's durable state as plain values, for the journal's
// snapshots: operations, live executions, queues (with their tenant, down
// to the round-robin position of each priority level, and the tenant
// whose turn it was last, so the order of dispatch is the same after a
// restore) and which worker runs what. Worker sessions, leases and the
// workers' rotation counters are not in it: after a restore every worker
// must reconnect. Tenants' limits are not either: they come from the auth
// policy the scheduler starts with. Lists are in a defined order, so two
// equal cores give equal states.
type coreState struct {
	Ops        []opState   // by name
	Execs      []execState // by id
	Queues     []queueState
	Completed  []string // names of retained completed operations, completion order
	LastTenant string   // the tenant dispatched last (version 2)
}

type opState struct {
	Name, Instance string
	Owner          string
	Action         digestState
	Exec           string // id of the execution it waits for, if any
	QueuedAt       int64  // Unix nanoseconds, 0 for none
	Done           bool
	Response       []byte // serialised ExecuteResponse
	// SameAs is 1 + the index in Ops of an earlier operation whose
	// response this one shares (the waiters of one execution hold one
	// response), its Response then nil; 0 for none (version 5).
	SameAs      int
	CompletedAt int64
	Worker      string
	StartedAt   int64
	resp        *repb.ExecuteResponse // until seal serialises it
}

type execState struct {
	ID, Instance         string
	Action               digestState
	Cacheable            bool
	Command, InputRoot   digestState
	Platform             []propState
	Timeout              time.Duration
	DoNotCache           bool
	RequestMetadata      []byte
	Invocation, QueueKey string
	Priority             int32
	Executing            bool
	Worker               string
	Attempt              int32
	Retries              int
	QueuedAt, StartedAt  int64
	Waiters              []string
	Private              bool // version 3; false before (none was private)
	WorkingDirKnown      bool // version 4, with WorkingDir; false before
	WorkingDir           string
}

type queueState struct {
	Key, Instance string
	Tenant        string // version 2; a version 1 queue is the tenant ""'s
	Routing       []propState
	Buckets       []bucketState
}

type bucketState struct {
	Priority int32
	Next     int
	Ring     []fifoState
}

// fifoState keeps an invocation's place in its ring even when it holds no
// live execution, because the ring position decides who goes next.
type fifoState struct {
	ID    string
	Execs []string
}

type digestState struct {
	Fn   int32
	Hash string
	Size int64
}

type propState struct{ Name, Value string }

// nanos and fromNanos keep times as Unix nanoseconds, 0 for the zero time.
func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

func toDigestState(d digest.Digest) digestState {
	return digestState{Fn: int32(d.Function()), Hash: d.Hash(), Size: d.SizeBytes()}
}

func (d digestState) digest() (digest.Digest, error) {
	if d.Hash == "" {
		return digest.Digest{}, nil
	}
	return digest.New(digest.Function(d.Fn), d.Hash, d.Size)
}

func toPropStates(ps []*workerpb.Property) []propState {
	out := make([]propState, len(ps))
	for i, p := range ps {
		out[i] = propState{p.Name, p.Value}
	}
	return out
}

func fromPropStates(ps []propState) []*workerpb.Property {
	if len(ps) == 0 {
		return nil
	}
	out := make([]*workerpb.Property, len(ps))
	for i, p := range ps {
		out[i] = &workerpb.Property{Name: p.Name, Value: p.Value}
	}
	return out
}

// state returns the core's durable state, ready to encode.
func (c *core) state() (*coreState, error) {
	st := c.capture()
	return st, st.seal()
}

// capture copies the core's durable state; seal must be called on it
// before it is encoded. capture is the part that needs the scheduler's
// lock; it neither sorts nor serialises, which seal does without the lock
// (responses are read-only once set).
func (c *core) capture() *coreState {
	st := &coreState{Ops: make([]opState, 0, len(c.ops)), Execs: make([]execState, 0, len(c.execs)), LastTenant: c.lastTenant}
	for _, op := range c.ops {
		os := opState{Name: op.name, Instance: op.instance, Owner: op.owner, Action: toDigestState(op.action), QueuedAt: nanos(op.queuedAt),
			Done: op.done, CompletedAt: nanos(op.completedAt), Worker: op.worker, StartedAt: nanos(op.startedAt), resp: op.response}
		if op.exec != nil {
			os.Exec = op.exec.id
		}
		st.Ops = append(st.Ops, os)
	}
	for _, e := range c.execs {
		es := execState{ID: e.id, Instance: e.key.instance, Action: toDigestState(e.key.action), Cacheable: e.cacheable, Private: e.private,
			Command: toDigestState(e.spec.command), InputRoot: toDigestState(e.spec.inputRoot),
			Platform: toPropStates(e.spec.platform), Timeout: e.spec.timeout, DoNotCache: e.spec.doNotCache,
			RequestMetadata: e.spec.requestMetadata, WorkingDirKnown: e.spec.workingDirKnown, WorkingDir: e.spec.workingDir,
			Invocation: e.invocation, QueueKey: e.queue.key,
			Priority: e.priority, Executing: e.stage == repb.ExecutionStage_EXECUTING,
			Attempt: e.attempt, Retries: e.retries, QueuedAt: nanos(e.queuedAt), StartedAt: nanos(e.startedAt)}
		if e.worker != nil {
			es.Worker = e.worker.id
		}
		for _, op := range e.waiters {
			es.Waiters = append(es.Waiters, op.name)
		}
		st.Execs = append(st.Execs, es)
	}
	for _, q := range c.queues {
		st.Queues = append(st.Queues, q.state())
	}
	for _, op := range c.completed {
		if c.ops[op.name] == op {
			st.Completed = append(st.Completed, op.name)
		}
	}
	return st
}

// seal puts a captured state's lists in their defined order and
// serialises the responses.
func (st *coreState) seal() error {
	slices.SortFunc(st.Ops, func(a, b opState) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(st.Execs, func(a, b execState) int { return strings.Compare(a.ID, b.ID) })
	slices.SortFunc(st.Queues, func(a, b queueState) int { return strings.Compare(a.Key, b.Key) })
	// A response shared in memory is written once: written for every
	// waiter, twenty followers of a 4 MB result made an 80 MB snapshot,
	// and as many copies in memory after a restart.
	first := map[*repb.ExecuteResponse]int{}
	for i := range st.Ops {
		o := &st.Ops[i]
		if j, ok := first[o.resp]; ok && o.resp != nil {
			o.SameAs, o.resp = j+1, nil
			continue
		}
		if o.resp != nil {
			first[o.resp] = i
			b, err := proto.Marshal(o.resp)
			if err != nil {
				return fmt.Errorf("operation %s: %w", o.Name, err)
			}
			o.Response, o.resp = b, nil
		}
	}
	return nil
}

func (q *queue) state() queueState {
	qs := queueState{Key: q.key, Instance: q.instance, Tenant: q.tenant.name, Routing: toPropStates(q.routing)}
	for _, b := range q.buckets {
		bs := bucketState{Priority: b.priority, Next: b.next}
		for _, f := range b.ring {
			fs := fifoState{ID: f.id}
			for _, ent := range f.entries[f.head:] {
				if ent.gen == ent.e.qgen && ent.e.bucket != nil {
					fs.Execs = append(fs.Execs, ent.e.id)
				}
			}
			bs.Ring = append(bs.Ring, fs)
		}
		qs.Buckets = append(qs.Buckets, bs)
	}
	return qs
}

// equalStates compares two states, for tests and replay checks.
func equalStates(a, b *coreState) bool {
	ea, err1 := encodeState(a)
	eb, err2 := encodeState(b)
	return err1 == nil && err2 == nil && slices.Equal(ea, eb)
}
