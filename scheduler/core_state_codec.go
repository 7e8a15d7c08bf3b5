package scheduler

import (
	"fmt"
	"time"

	"github.com/paddock-build/paddock/internal/wirecodec"
)

// A snapshot is a version number, then the coreState's lists, each as a
// count and its elements' fields in a fixed order, written with package
// wirecodec like records. Hand-written for the same reason as records:
// a snapshot of 100,000 operations is read at start-up.
//
// Version 2 added each queue's tenant (after its instance) and the
// tenant dispatched last (at the end). Version 1 snapshots are still read:
// their queues become the tenant ""'s, keyed as such (see queueID).
// Version 3 added whether each execution is private (at the end of its
// fields; execution.private); in older snapshots none is.
// Version 4 added each execution's working directory (after that), and
// whether it is known; in older snapshots it is not.
// Version 5 added, at the end, the operations that share an earlier
// one's response (opState.SameAs), as pairs of indexes in Ops; in older
// snapshots each holds its own.
const stateVersion = 5

func encodeState(st *coreState) ([]byte, error) {
	w := wirecodec.NewWriter(make([]byte, 0, 64+300*len(st.Ops)))
	w.Uvarint(stateVersion, uint64(len(st.Ops)))
	for _, o := range st.Ops {
		w.Str(o.Name, o.Instance, o.Owner)
		writeDigestState(w, o.Action)
		w.Str(o.Exec)
		w.Varint(o.QueuedAt)
		w.Bool(o.Done)
		w.Blob(o.Response)
		w.Varint(o.CompletedAt)
		w.Str(o.Worker)
		w.Varint(o.StartedAt)
	}
	w.Uvarint(uint64(len(st.Execs)))
	for _, e := range st.Execs {
		w.Str(e.ID, e.Instance)
		writeDigestState(w, e.Action)
		w.Bool(e.Cacheable)
		writeDigestState(w, e.Command)
		writeDigestState(w, e.InputRoot)
		writePropStates(w, e.Platform)
		w.Varint(int64(e.Timeout))
		w.Bool(e.DoNotCache)
		w.Blob(e.RequestMetadata)
		w.Str(e.Invocation, e.QueueKey)
		w.Varint(int64(e.Priority))
		w.Bool(e.Executing)
		w.Str(e.Worker)
		w.Varint(int64(e.Attempt))
		w.Uvarint(uint64(e.Retries))
		w.Varint(e.QueuedAt, e.StartedAt)
		w.StringList(e.Waiters)
		w.Bool(e.Private)
		w.Bool(e.WorkingDirKnown)
		w.Str(e.WorkingDir)
	}
	w.Uvarint(uint64(len(st.Queues)))
	for _, q := range st.Queues {
		w.Str(q.Key, q.Instance, q.Tenant)
		writePropStates(w, q.Routing)
		w.Uvarint(uint64(len(q.Buckets)))
		for _, b := range q.Buckets {
			w.Varint(int64(b.Priority))
			w.Uvarint(uint64(b.Next), uint64(len(b.Ring)))
			for _, f := range b.Ring {
				w.Str(f.ID)
				w.StringList(f.Execs)
			}
		}
	}
	w.StringList(st.Completed)
	w.Str(st.LastTenant)
	var shared []uint64
	for i, o := range st.Ops {
		if o.SameAs > 0 {
			shared = append(shared, uint64(i), uint64(o.SameAs-1))
		}
	}
	w.Uvarint(uint64(len(shared) / 2))
	w.Uvarint(shared...)
	return w.Bytes(), nil
}

func decodeState(b []byte) (*coreState, error) {
	r := wirecodec.NewReader(b, "scheduler state")
	v := r.Uvarint()
	if (v < 1 || v > stateVersion) && r.Err() == nil {
		return nil, fmt.Errorf("scheduler state version %d, this scheduler reads 1 to %d%s", v, stateVersion, newerJournal(v > stateVersion))
	}
	st := &coreState{}
	st.Ops = make([]opState, r.Count(1))
	for i := range st.Ops {
		o := &st.Ops[i]
		o.Name, o.Instance, o.Owner, o.Action, o.Exec = r.Str(), r.Str(), r.Str(), readDigestState(r), r.Str()
		o.QueuedAt, o.Done, o.Response, o.CompletedAt = r.Varint(), r.Bool(), r.Blob(), r.Varint()
		o.Worker, o.StartedAt = r.Str(), r.Varint()
	}
	st.Execs = make([]execState, r.Count(1))
	for i := range st.Execs {
		e := &st.Execs[i]
		e.ID, e.Instance, e.Action, e.Cacheable = r.Str(), r.Str(), readDigestState(r), r.Bool()
		e.Command, e.InputRoot, e.Platform = readDigestState(r), readDigestState(r), readPropStates(r)
		e.Timeout, e.DoNotCache, e.RequestMetadata = time.Duration(r.Varint()), r.Bool(), r.Blob()
		e.Invocation, e.QueueKey, e.Priority, e.Executing = r.Str(), r.Str(), int32(r.Varint()), r.Bool()
		e.Worker, e.Attempt, e.Retries = r.Str(), int32(r.Varint()), int(r.Uvarint())
		e.QueuedAt, e.StartedAt, e.Waiters = r.Varint(), r.Varint(), r.StringList()
		if v >= 3 {
			e.Private = r.Bool()
		}
		if v >= 4 {
			e.WorkingDirKnown, e.WorkingDir = r.Bool(), r.Str()
		}
	}
	st.Queues = make([]queueState, r.Count(1))
	for i := range st.Queues {
		q := &st.Queues[i]
		q.Key, q.Instance = r.Str(), r.Str()
		if v >= 2 {
			q.Tenant = r.Str()
		}
		q.Routing = readPropStates(r)
		q.Buckets = make([]bucketState, r.Count(1))
		for j := range q.Buckets {
			bk := &q.Buckets[j]
			bk.Priority, bk.Next = int32(r.Varint()), int(r.Uvarint())
			bk.Ring = make([]fifoState, r.Count(1))
			for k := range bk.Ring {
				bk.Ring[k] = fifoState{ID: r.Str(), Execs: r.StringList()}
			}
		}
	}
	st.Completed = r.StringList()
	if v >= 2 {
		st.LastTenant = r.Str()
	} else {
		upgradeV1(st)
	}
	if v >= 5 {
		readShared(r, st)
	}
	if err := r.End(); err != nil {
		return nil, fmt.Errorf("decode scheduler state: %w", err)
	}
	return st, nil
}

// readShared reads the pairs of operations sharing a response (version
// 5): each names an earlier operation that holds the bytes.
func readShared(r *wirecodec.Reader, st *coreState) {
	for n := r.Count(2); n > 0 && r.Err() == nil; n-- {
		i, j := r.Uvarint(), r.Uvarint()
		if i >= uint64(len(st.Ops)) || j >= i || st.Ops[j].SameAs > 0 {
			r.Fail(fmt.Errorf("operation %d shares the response of operation %d, which is not an earlier one holding its own", i, j))
			return
		}
		st.Ops[i].SameAs, st.Ops[i].Response = int(j)+1, nil
	}
}

// upgradeV1 keys a version 1 snapshot's queues as the tenant ""'s:
// version 1 had no tenants in its queues.
func upgradeV1(st *coreState) {
	for i := range st.Queues {
		st.Queues[i].Key = queueID("", st.Queues[i].Key)
	}
	for i := range st.Execs {
		st.Execs[i].QueueKey = queueID("", st.Execs[i].QueueKey)
	}
}

func writeDigestState(w *wirecodec.Writer, d digestState) {
	w.Varint(int64(d.Fn))
	w.Str(d.Hash)
	w.Varint(d.Size)
}

func writePropStates(w *wirecodec.Writer, ps []propState) {
	w.Uvarint(uint64(len(ps)))
	for _, p := range ps {
		w.Str(p.Name, p.Value)
	}
}

func readDigestState(r *wirecodec.Reader) digestState {
	return digestState{Fn: int32(r.Varint()), Hash: r.Str(), Size: r.Varint()}
}

// readPropStates reads what writePropStates wrote; nil for none. A
// property takes two bytes at least.
func readPropStates(r *wirecodec.Reader) []propState {
	return wirecodec.ReadList(r, 2, func() propState { return propState{Name: r.Str(), Value: r.Str()} })
}
