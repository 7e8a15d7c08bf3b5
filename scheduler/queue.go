package scheduler

import (
	"sort"
	"time"

	"github.com/paddock-build/paddock/api/workerpb"
)

// queue holds the queued executions of one tenant for one (instance
// name, routing properties) pair; which tenant's queue goes next is
// decided above it (tenant.go). Lower priority numbers go first (REv2: lower number,
// higher priority); within one priority, invocations (tool_invocation_id)
// take turns, so one large build cannot starve a small one; within one
// invocation, first in first out.
//
// Removal is lazy within an invocation: a removed execution's entry stays
// in its FIFO until it reaches the head, where pop recognises it by a
// stale generation, or until the FIFO holds more removed entries than
// queued ones, when it is compacted. Invocations left with nothing queued
// stay in the ring until pop reaches them, or until they outnumber the
// others, when the ring is compacted (in one pass: removing each at once
// cost a scan of the ring per cancel, under the scheduler's lock). Fully
// lazy, a queue whose
// head was blocked (no worker for its platform, every slot busy) held
// every execution cancelled behind it, RequestMetadata and all, outside
// max_queued: a tenant at max_queued 20 held 200 MB with 10,000 Executes
// each cancelled at once. The counters (size) are exact at all times.
type queue struct {
	key      string // queueID: tenant, then instance name and routing
	tenant   *tenant
	instance string
	routing  []*workerpb.Property
	buckets  []*bucket // ascending priority; never empty
	size     int
	workers  []*worker // workers whose platform serves this queue
	rr       int       // where the next pump starts in workers
	// live counts the live executions (core.execs) of this queue, queued
	// or running. At zero the queue is dropped (core.dropExec): queue keys
	// are chosen by clients (instance names, platform values), and empty
	// queues kept forever let one tenant grow the scheduler, its journal
	// snapshots and every metrics scrape without bound.
	live int
	// unservedSince is when a Tick first found executions queued here and
	// no worker serving; zero otherwise (core_unserved.go). Not kept
	// across a restart: the wait starts again.
	unservedSince time.Time
}

// bucket is one priority level of a queue.
type bucket struct {
	priority int32
	size     int
	byInv    map[string]*invocationFIFO
	ring     []*invocationFIFO // round-robin order
	next     int
	// empty counts the invocations in ring with nothing queued: a
	// function of the ring's contents, so a restored bucket has the same.
	empty int
}

// invocationFIFO is the queued executions of one invocation at one priority.
type invocationFIFO struct {
	id      string
	entries []queueEntry
	head    int
	live    int // entries[head:] that are queued, not removed
}

// fifoSlack is how many removed entries a FIFO keeps before it is
// compacted, whatever it holds.
const fifoSlack = 64

type queueEntry struct {
	e   *execution
	gen uint32
}

func (q *queue) push(e *execution, front bool) {
	b := q.bucketFor(e.priority)
	f := b.byInv[e.invocation]
	if f == nil {
		f = &invocationFIFO{id: e.invocation}
		b.byInv[e.invocation] = f
		b.ring = append(b.ring, f)
	} else if f.live == 0 {
		b.empty--
	}
	ent := queueEntry{e: e, gen: e.qgen}
	if front {
		if f.head > 0 {
			f.head--
			f.entries[f.head] = ent
		} else {
			f.entries = append([]queueEntry{ent}, f.entries...)
		}
	} else {
		f.entries = append(f.entries, ent)
	}
	f.live++
	b.size++
	q.size++
	e.bucket = b
}

func (q *queue) bucketFor(p int32) *bucket {
	i := sort.Search(len(q.buckets), func(i int) bool { return q.buckets[i].priority >= p })
	if i < len(q.buckets) && q.buckets[i].priority == p {
		return q.buckets[i]
	}
	b := &bucket{priority: p, byInv: map[string]*invocationFIFO{}}
	q.buckets = append(q.buckets, nil)
	copy(q.buckets[i+1:], q.buckets[i:])
	q.buckets[i] = b
	return b
}

// remove takes a queued execution out (it was cancelled).
func (q *queue) remove(e *execution) {
	b := e.bucket
	e.qgen++
	b.size--
	e.bucket = nil
	q.size--
	if b.size == 0 {
		q.dropBucket(b)
		return
	}
	b.removed(e.invocation)
}

// removed notes that an entry of invocation inv was removed. A FIFO with
// more removed entries than queued ones is compacted; when the
// invocations with nothing queued outnumber the others, the ring is.
func (b *bucket) removed(inv string) {
	f := b.byInv[inv]
	if f == nil {
		return
	}
	if f.live--; f.live == 0 {
		b.emptied()
		return
	}
	if len(f.entries)-f.head-f.live > f.live+fifoSlack {
		f.compact()
	}
}

// emptied notes that an invocation in the ring has nothing queued any
// more, and compacts the ring past the slack.
func (b *bucket) emptied() {
	if b.empty++; b.empty > len(b.ring)-b.empty+fifoSlack {
		b.compactRing()
	}
}

// compactRing drops the invocations with nothing queued from the ring,
// as pop would on reaching each (it skips them without taking a turn), so
// the order of the others is unchanged.
func (b *bucket) compactRing() {
	kept := b.ring[:0]
	next := b.next
	for i, f := range b.ring {
		if f.live > 0 {
			kept = append(kept, f)
			continue
		}
		delete(b.byInv, f.id)
		if i < b.next {
			next--
		}
	}
	clear(b.ring[len(kept):])
	b.ring, b.next, b.empty = kept, next, 0
}

// compact drops the removed entries, keeping the queued ones in order.
func (f *invocationFIFO) compact() {
	n := 0
	for _, ent := range f.entries[f.head:] {
		if ent.gen == ent.e.qgen && ent.e.bucket != nil {
			f.entries[n] = ent
			n++
		}
	}
	clear(f.entries[n:])
	f.entries = f.entries[:n]
	f.head = 0
}

// dropBucket removes an emptied priority level at once. Levels are never
// left empty, whoever looks at the queue, so the queue's shape (and a
// replay of it) depends only on what was pushed, popped and removed.
func (q *queue) dropBucket(b *bucket) {
	for i, qb := range q.buckets {
		if qb == b {
			q.buckets = append(q.buckets[:i], q.buckets[i+1:]...)
			return
		}
	}
}

// best returns the priority of the execution pop would return.
func (q *queue) best() (int32, bool) {
	q.dropEmptyBuckets()
	if len(q.buckets) == 0 {
		return 0, false
	}
	return q.buckets[0].priority, true
}

func (q *queue) dropEmptyBuckets() {
	for len(q.buckets) > 0 && q.buckets[0].size == 0 {
		q.buckets[0] = nil
		q.buckets = q.buckets[1:]
	}
}

// pop removes and returns the next execution, or nil.
func (q *queue) pop() *execution {
	q.dropEmptyBuckets()
	if len(q.buckets) == 0 {
		return nil
	}
	b := q.buckets[0]
	e := b.pop()
	if e != nil {
		q.size--
		e.qgen++
		e.bucket = nil
	}
	if b.size == 0 {
		q.dropBucket(b)
	}
	return e
}

// peek returns the execution pop would return, or nil, without taking
// it or changing the queue: a live core looks at the next execution
// (core.passesOver) where a replay does not, so looking must not alter
// the queue's shape.
func (q *queue) peek() *execution {
	for _, b := range q.buckets {
		if b.size > 0 {
			return b.peek()
		}
	}
	return nil
}

// peek is pop's choice without its changes: the invocations in turn from
// next, the first one holding a live entry.
func (b *bucket) peek() *execution {
	n := len(b.ring)
	start := b.next
	if start >= n {
		start = 0
	}
	for i := 0; i < n; i++ {
		if e := b.ring[(start+i)%n].peek(); e != nil {
			return e
		}
	}
	return nil
}

func (f *invocationFIFO) peek() *execution {
	for _, ent := range f.entries[f.head:] {
		if ent.e != nil && ent.gen == ent.e.qgen && ent.e.bucket != nil {
			return ent.e
		}
	}
	return nil
}

func (b *bucket) pop() *execution {
	for len(b.ring) > 0 {
		if b.next >= len(b.ring) {
			b.next = 0
		}
		f := b.ring[b.next]
		if e := f.pop(); e != nil {
			b.next++
			b.size--
			if f.live == 0 {
				b.emptied()
			}
			return e
		}
		b.empty--
		delete(b.byInv, f.id)
		b.ring = append(b.ring[:b.next], b.ring[b.next+1:]...)
	}
	return nil
}

func (f *invocationFIFO) pop() *execution {
	for f.head < len(f.entries) {
		ent := f.entries[f.head]
		f.entries[f.head] = queueEntry{}
		f.head++
		if ent.gen == ent.e.qgen && ent.e.bucket != nil {
			f.live--
			if f.head > 1024 && f.head*2 > len(f.entries) {
				n := copy(f.entries, f.entries[f.head:])
				f.entries = f.entries[:n]
				f.head = 0
			}
			return ent.e
		}
	}
	f.entries = f.entries[:0]
	f.head = 0
	return nil
}
