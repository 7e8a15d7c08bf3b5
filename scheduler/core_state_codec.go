package scheduler

import (
	"fmt"
	"time"
)

// A snapshot is a version number, then the coreState's lists, each as a
// count and its elements' fields in a fixed order, written with the
// record codec's primitives. Hand-written for the same reason as records:
// a snapshot of 100,000 operations is read at start-up.
//
// Version 2 added each queue's tenant (after its instance) and the
// tenant dispatched last (at the end). Version 1 snapshots are still read:
// their queues become the tenant ""'s, keyed as such (see queueID).
const stateVersion = 2

func encodeState(st *coreState) ([]byte, error) {
	w := &recWriter{b: make([]byte, 0, 64+300*len(st.Ops))}
	w.uvarint(stateVersion)
	w.uvarint(uint64(len(st.Ops)))
	for _, o := range st.Ops {
		w.str(o.Name)
		w.str(o.Instance)
		w.str(o.Owner)
		w.digestState(o.Action)
		w.str(o.Exec)
		w.varint(o.QueuedAt)
		w.bool(o.Done)
		w.bytes(o.Response)
		w.varint(o.CompletedAt)
		w.str(o.Worker)
		w.varint(o.StartedAt)
	}
	w.uvarint(uint64(len(st.Execs)))
	for _, e := range st.Execs {
		w.str(e.ID)
		w.str(e.Instance)
		w.digestState(e.Action)
		w.bool(e.Cacheable)
		w.digestState(e.Command)
		w.digestState(e.InputRoot)
		w.propStates(e.Platform)
		w.varint(int64(e.Timeout))
		w.bool(e.DoNotCache)
		w.bytes(e.RequestMetadata)
		w.str(e.Invocation)
		w.str(e.QueueKey)
		w.varint(int64(e.Priority))
		w.bool(e.Executing)
		w.str(e.Worker)
		w.varint(int64(e.Attempt))
		w.uvarint(uint64(e.Retries))
		w.varint(e.QueuedAt)
		w.varint(e.StartedAt)
		w.strs(e.Waiters)
	}
	w.uvarint(uint64(len(st.Queues)))
	for _, q := range st.Queues {
		w.str(q.Key)
		w.str(q.Instance)
		w.str(q.Tenant)
		w.propStates(q.Routing)
		w.uvarint(uint64(len(q.Buckets)))
		for _, b := range q.Buckets {
			w.varint(int64(b.Priority))
			w.uvarint(uint64(b.Next))
			w.uvarint(uint64(len(b.Ring)))
			for _, f := range b.Ring {
				w.str(f.ID)
				w.strs(f.Execs)
			}
		}
	}
	w.strs(st.Completed)
	w.str(st.LastTenant)
	return w.b, nil
}

func decodeState(b []byte) (*coreState, error) {
	r := &recReader{b: b}
	v := r.uvarint()
	if v != 1 && v != stateVersion && r.err == nil {
		return nil, fmt.Errorf("scheduler state version %d, this scheduler reads 1 to %d", v, stateVersion)
	}
	st := &coreState{}
	st.Ops = make([]opState, r.count())
	for i := range st.Ops {
		o := &st.Ops[i]
		o.Name, o.Instance, o.Owner, o.Action, o.Exec = r.str(), r.str(), r.str(), r.digestState(), r.str()
		o.QueuedAt, o.Done, o.Response, o.CompletedAt = r.varint(), r.bool(), r.bytes(), r.varint()
		o.Worker, o.StartedAt = r.str(), r.varint()
	}
	st.Execs = make([]execState, r.count())
	for i := range st.Execs {
		e := &st.Execs[i]
		e.ID, e.Instance, e.Action, e.Cacheable = r.str(), r.str(), r.digestState(), r.bool()
		e.Command, e.InputRoot, e.Platform = r.digestState(), r.digestState(), r.propStates()
		e.Timeout, e.DoNotCache, e.RequestMetadata = time.Duration(r.varint()), r.bool(), r.bytes()
		e.Invocation, e.QueueKey, e.Priority, e.Executing = r.str(), r.str(), int32(r.varint()), r.bool()
		e.Worker, e.Attempt, e.Retries = r.str(), int32(r.varint()), int(r.uvarint())
		e.QueuedAt, e.StartedAt, e.Waiters = r.varint(), r.varint(), r.strs()
	}
	st.Queues = make([]queueState, r.count())
	for i := range st.Queues {
		q := &st.Queues[i]
		q.Key, q.Instance = r.str(), r.str()
		if v >= 2 {
			q.Tenant = r.str()
		}
		q.Routing = r.propStates()
		q.Buckets = make([]bucketState, r.count())
		for j := range q.Buckets {
			bk := &q.Buckets[j]
			bk.Priority, bk.Next = int32(r.varint()), int(r.uvarint())
			bk.Ring = make([]fifoState, r.count())
			for k := range bk.Ring {
				bk.Ring[k] = fifoState{ID: r.str(), Execs: r.strs()}
			}
		}
	}
	st.Completed = r.strs()
	if v >= 2 {
		st.LastTenant = r.str()
	} else {
		upgradeV1(st)
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%d unexpected byte(s) at the end", len(r.b))
	}
	if r.err != nil {
		return nil, fmt.Errorf("decode scheduler state: %w", r.err)
	}
	return st, nil
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

func (w *recWriter) digestState(d digestState) {
	w.varint(int64(d.Fn))
	w.str(d.Hash)
	w.varint(d.Size)
}

func (w *recWriter) propStates(ps []propState) {
	w.uvarint(uint64(len(ps)))
	for _, p := range ps {
		w.str(p.Name)
		w.str(p.Value)
	}
}

func (w *recWriter) strs(ss []string) {
	w.uvarint(uint64(len(ss)))
	for _, s := range ss {
		w.str(s)
	}
}

// count reads a list length, refusing one longer than the bytes left
// (every element takes at least one byte), so corrupt input cannot make it
// allocate without bound.
func (r *recReader) count() int {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		if r.err == nil {
			r.err = errShort
		}
		return 0
	}
	return int(n)
}

func (r *recReader) digestState() digestState {
	return digestState{Fn: int32(r.varint()), Hash: r.str(), Size: r.varint()}
}

func (r *recReader) propStates() []propState {
	ps := make([]propState, r.count())
	for i := range ps {
		ps[i] = propState{Name: r.str(), Value: r.str()}
	}
	if len(ps) == 0 {
		return nil
	}
	return ps
}

func (r *recReader) strs() []string {
	n := r.count()
	if n == 0 {
		return nil
	}
	ss := make([]string, n)
	for i := range ss {
		ss[i] = r.str()
	}
	return ss
}
