package storage

import (
	"container/list"
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/internal/fdlimit"
	"github.com/paddock-build/paddock/internal/grpclimit"
)

// A ByteStream read or upload holds its blob open for as long as it
// lasts: a file descriptor of this process for a disk CAS, a stream for
// a remote one. A parked upload holds its temporary file for
// UploadIdleTimeout after its client has gone. Unbounded, one client with
// a few thousand streams (gRPC multiplexes any number over one
// connection) used up the process's open files, and in `paddock up` the
// scheduler's and the worker's with them: the farm could not accept a
// connection until the client let go, and the parked uploads kept the
// files for a minute more. So these streams take a slot each, out of
// ServerOptions.MaxOpenStreams.
//
// A stream that finds no free slot waits for one, in a queue, for up to
// maxSlotWait. Refusing it at once made Bazel, which opens up to 100
// connections of 100 streams each, back off and retry thousands of
// uploads of an action with 20,000 inputs: the build took 93 s instead
// of 59 s, and could fail once its retries ran out. Most streams last
// milliseconds, so a slot is usually free long before the bound. A waiter
// holds no file and no slot, but it does hold memory: its goroutine and
// call (the gRPC server bounds calls: grpclimit), and for a Write its
// first message, which names the blob and so must be read before the
// slot is asked for, and kept until its data can be written. grpclimit
// counts 16 KiB a call, not the up to 5 MiB such a message may carry:
// 800 Writes waiting with 4 MiB each took the server from 92 MB to
// 3.5 GB. So the queue is bounded too (mayWaitLocked), and a stream that
// would pass its bounds is refused at once, as every stream that found no
// free slot was before streams waited.

// maxWaitingWriteBytes bounds the first messages that Writes waiting for
// a slot hold, together. Bazel sends its uploads in 16 KiB chunks (a
// small blob whole in one), so 64 MiB lets thousands of its uploads wait,
// while a client sending the largest messages gets a dozen waiting, not
// enough memory to matter beside the server's own.
const maxWaitingWriteBytes = 64 << 20

// defaultMaxOpenStreams is a quarter of the process's open-file limit
// (at least 64): the rest stays for connections, batch requests, the
// worker's input roots and the scheduler's journal. It is also at most
// what an eighth of the memory holds at streamBytes a stream: with a
// limit of a million open files, the quarter let one tenant's half-done
// uploads hold several gigabytes.
func defaultMaxOpenStreams() int {
	return maxOpenStreamsFor(fdlimit.Share(4, 64), grpclimit.MemoryBytes())
}

// maxOpenStreamsFor is defaultMaxOpenStreams for a share of the open
// files and the memory (0: unknown). It is pure.
func maxOpenStreamsFor(fdShare int, memory uint64) int {
	if memory == 0 {
		return fdShare
	}
	return min(fdShare, max(64, int(min(memory/8/streamBytes, 1<<30))))
}

// streamBytes is what a ByteStream stream holding a slot is assumed to
// cost: an upload's copy buffer (copyBufferBytes), its Put's and its
// handler's goroutines, and its pipe, with room: 2,400 half-done uploads
// held 97 MB of live heap (71 MB of it their copy buffers), beside the
// gRPC receive buffers they had freed.
const streamBytes = 64 << 10

// maxSlotWait bounds how long a stream waits for a slot before it is
// refused with RESOURCE_EXHAUSTED, which clients retry with backoff. It
// is well under Bazel's default --remote_timeout (60 s), so the stream
// still has time to move its bytes, and short enough that a client whose
// streams are all held by a stalled peer hears so and backs off.
const maxSlotWait = 5 * time.Second

// A tenant (a caller the auth policy names) holds at most
// MaxOpenStreamsPerTenant slots, half of them by default, so that one
// tenant's thousands of idle streams leave the others room: whatever it
// does, they share the rest. Callers with no tenant (no policy, or the
// farm's own workers) count only against the whole. A tenant at its
// share waits for one of its own slots to free; a slot another tenant
// frees goes to the first waiter that may take it, so a tenant at its
// share never holds up the others' streams queued behind its own.

// streamSlots counts the slots a byteStreamServer's streams hold, and
// queues the streams that wait for one; guarded by the server's mu.
type streamSlots struct {
	open    int            // reads and uploads holding a slot
	openBy  map[string]int // the same, by tenant; only named tenants
	waiting list.List      // *slotWaiter, streams waiting for a slot, oldest first
	// waitingBy counts the waiters by tenant (only named tenants): one
	// tenant fills at most its share of the queue (mayWaitLocked).
	waitingBy map[string]int
	// waitingBytes is what the waiting Writes hold of their first
	// messages, at most maxWaitingWriteBytes; the Writes waiting for
	// another stream's upload of their name (waitUntilFree) included.
	waitingBytes int64
	// waitingBytesBy is waitingBytes by tenant (only named tenants): one
	// tenant holds at most its share of the bound (mayWaitLocked).
	waitingBytesBy map[string]int64
	// sameNameWaiting counts those Writes, which are not in the queue:
	// they wait for an upload, not a slot. waitingBy counts them too.
	sameNameWaiting int
	// slotWaitBound and waitBytesBound, when set (by tests), replace
	// maxSlotWait and maxWaitingWriteBytes.
	slotWaitBound  time.Duration
	waitBytesBound int64
}

// slotWaiter is a stream in streamSlots.waiting.
type slotWaiter struct {
	tenant string
	// held is the size of the first message a waiting Write holds (0 for
	// a Read), counted in streamSlots.waitingBytes while it waits.
	held int64
	// granted is set, under the server's mu, when a slot was taken for
	// the waiter and it left the queue; ready is closed then.
	granted bool
	ready   chan struct{}
	// parked is signalled (buffered, so never blocking) when an upload
	// the waiter may abort for a slot has been parked.
	parked chan struct{}
}

// takeSlot reserves a slot for a new read or upload of tenant, which
// holds held bytes of its request while it waits. At a bound it first
// aborts the upload parked longest to make room (its client has gone, and
// can start again from offset 0): any tenant's at the server's bound, the
// tenant's own at its share. Failing that it waits, behind the streams
// that came before it, until a slot frees, ctx ends, or maxSlotWait
// passes; then it fails with RESOURCE_EXHAUSTED. When the queue is at its
// bounds it fails so at once.
func (s *byteStreamServer) takeSlot(ctx context.Context, tenant string, held int64) error {
	var (
		w       *slotWaiter
		place   *list.Element
		timeout <-chan time.Time
	)
	for {
		s.mu.Lock()
		if w != nil && w.granted {
			s.passOnParkedLocked(w)
			s.mu.Unlock()
			return nil
		}
		// The queue holds no waiter that may take a free slot (each
		// release hands it to the first that may), so a newcomer that
		// may is not jumping ahead of anyone.
		if w == nil && s.mayTakeLocked(tenant) {
			s.takeLocked(tenant)
			s.mu.Unlock()
			return nil
		}
		victim := s.victimLocked(tenant)
		if victim == nil && w == nil {
			if !s.mayWaitLocked(tenant, held) {
				err := s.refusalLocked(tenant)
				s.mu.Unlock()
				return err
			}
			w = &slotWaiter{tenant: tenant, held: held, ready: make(chan struct{}), parked: make(chan struct{}, 1)}
			place = s.waiting.PushBack(w)
			s.countWaiterLocked(tenant, held, 1)
			t := time.NewTimer(s.slotWait())
			defer t.Stop()
			timeout = t.C
		}
		s.mu.Unlock()
		if victim != nil {
			// Its Put returns and frees its slot, for the first waiter
			// that may take it: this stream, or one that came earlier.
			s.abort(victim, errUploadAborted)
			victim.busy.Unlock()
			continue
		}
		select {
		case <-w.ready:
		case <-w.parked:
		case <-ctx.Done():
			return s.stopWaiting(w, place, status.FromContextError(ctx.Err()).Err())
		case <-timeout:
			return s.stopWaiting(w, place, nil)
		}
	}
}

// stopWaiting takes w out of the queue when its stream gives up: with
// err (its context ended), or with nil when maxSlotWait passed, which
// refuses it with RESOURCE_EXHAUSTED. A slot granted meanwhile is kept
// on a timeout and released for the next waiter when the context ended.
func (s *byteStreamServer) stopWaiting(w *slotWaiter, place *list.Element, err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w.granted {
		s.passOnParkedLocked(w)
		if err != nil {
			s.releaseLocked(w.tenant)
		}
		return err
	}
	s.leaveQueueLocked(w, place)
	s.passOnParkedLocked(w)
	if err != nil {
		return err
	}
	return s.refusalLocked(w.tenant)
}

// refusalLocked is the RESOURCE_EXHAUSTED a stream of tenant gets when it
// finds no slot it may take: naming the tenant when it is at its share.
func (s *byteStreamServer) refusalLocked(tenant string) error {
	if tenant != "" && s.openBy[tenant] >= s.opts.MaxOpenStreamsPerTenant {
		return status.Errorf(codes.ResourceExhausted, "tenant %q has %d ByteStream reads and uploads in progress, as many as one tenant may have at once; retry later", tenant, s.opts.MaxOpenStreamsPerTenant)
	}
	return status.Errorf(codes.ResourceExhausted, "%d ByteStream reads and uploads are in progress, as many as this server allows at once; retry later", s.opts.MaxOpenStreams)
}

// waitersPerSlot bounds the queue: at most this many streams wait per
// slot. Bazel opens up to 100 connections of 100 streams each, and a
// build with tens of thousands of inputs has that many uploads in flight;
// a burst of five times the slots then goes through with no refusal.
const waitersPerSlot = 4

// mayWaitLocked tells whether a stream holding held bytes may join the
// queue: it keeps the first messages the waiting Writes hold within
// maxWaitingWriteBytes (memory: a waiting Write keeps its first message,
// up to 4 MiB), and the queue within waitersPerSlot × MaxOpenStreams
// waiters, which bounds what the waiting Reads and small Writes hold (a
// goroutine and a call each) and the scans of the queue that each freed
// slot and each parked upload make under mu.
//
// A tenant of the policy has a share of the queue as of the slots, in
// waiters and in bytes: waitersPerSlot × MaxOpenStreamsPerTenant waiters
// and the same fraction of maxWaitingWriteBytes, half of each by default,
// so that one tenant's streams waiting cannot leave every other tenant to
// be refused at once when the slots are busy. Before the share counted
// bytes, 16 waiting Writes of one tenant, each holding a 4 MiB first
// message, took the whole bound.
func (s *byteStreamServer) mayWaitLocked(tenant string, held int64) bool {
	if tenant != "" && !s.tenantMayWaitLocked(tenant, held) {
		return false
	}
	return s.waiting.Len()+s.sameNameWaiting < waitersPerSlot*s.opts.MaxOpenStreams && s.waitingBytes+held <= s.waitBytes()
}

// tenantMayWaitLocked tells whether tenant's share of the queue has room
// for a waiter holding held bytes.
func (s *byteStreamServer) tenantMayWaitLocked(tenant string, held int64) bool {
	share := s.waitBytes() * int64(s.opts.MaxOpenStreamsPerTenant) / int64(max(s.opts.MaxOpenStreams, 1))
	return s.waitingBy[tenant] < waitersPerSlot*s.opts.MaxOpenStreamsPerTenant && s.waitingBytesBy[tenant]+held <= share
}

// waitRefusalLocked is the RESOURCE_EXHAUSTED of a stream of tenant that
// may not wait (mayWaitLocked): for a slot when name is empty, else for
// the upload of name another stream holds. It names the tenant when its
// share is what is full.
func (s *byteStreamServer) waitRefusalLocked(tenant, name string, held int64) error {
	if name == "" {
		return s.refusalLocked(tenant)
	}
	if tenant != "" && !s.tenantMayWaitLocked(tenant, held) {
		return status.Errorf(codes.ResourceExhausted, "resource_name %q is being written by another stream, and tenant %q has as many Writes waiting as one tenant may; retry later", name, tenant)
	}
	return status.Errorf(codes.ResourceExhausted, "resource_name %q is being written by another stream, and as many Writes wait as the server lets wait; retry later", name)
}

// leaveQueueLocked takes w, at place, out of the queue, and its bytes out
// of the queue's count.
func (s *byteStreamServer) leaveQueueLocked(w *slotWaiter, place *list.Element) {
	s.waiting.Remove(place)
	s.countWaiterLocked(w.tenant, -w.held, -1)
}

// countWaiterLocked adds (n 1) or takes away (n -1, held negative) a
// waiter of tenant holding held bytes, in the counts the bounds of
// mayWaitLocked read.
func (s *byteStreamServer) countWaiterLocked(tenant string, held int64, n int) {
	s.waitingBytes += held
	if tenant == "" {
		return
	}
	s.waitingBy[tenant] += n
	s.waitingBytesBy[tenant] += held
	if s.waitingBy[tenant] == 0 {
		delete(s.waitingBy, tenant)
		delete(s.waitingBytesBy, tenant)
	}
}

// slotWait is how long a stream waits for a slot: maxSlotWait, unless a
// test set the server's slotWaitBound.
func (s *byteStreamServer) slotWait() time.Duration {
	if s.slotWaitBound > 0 {
		return s.slotWaitBound
	}
	return maxSlotWait
}

// waitBytes is maxWaitingWriteBytes, unless a test set the server's
// waitBytesBound.
func (s *byteStreamServer) waitBytes() int64 {
	if s.waitBytesBound > 0 {
		return s.waitBytesBound
	}
	return maxWaitingWriteBytes
}

// mayTakeLocked tells whether a stream of tenant may take a slot now:
// the server is under its bound, and the tenant under its share.
func (s *byteStreamServer) mayTakeLocked(tenant string) bool {
	return s.open < s.opts.MaxOpenStreams &&
		(tenant == "" || s.openBy[tenant] < s.opts.MaxOpenStreamsPerTenant)
}

func (s *byteStreamServer) takeLocked(tenant string) {
	s.open++
	if tenant != "" {
		s.openBy[tenant]++
	}
}

// victimLocked returns a parked upload to abort so that a stream of
// tenant, which may not take a slot now, gets one (see oldestParkedLocked),
// or nil: the tenant's own at its share, else any at the server's bound.
func (s *byteStreamServer) victimLocked(tenant string) *upload {
	u, ok := s.mayDropLocked(tenant)
	if !ok {
		return nil
	}
	return s.oldestParkedLocked(u)
}

// mayDropLocked returns which parked uploads a stream of tenant may
// abort for a slot, and false when it may drop none (it may take a slot).
func (s *byteStreamServer) mayDropLocked(tenant string) (func(*upload) bool, bool) {
	if tenant != "" && s.openBy[tenant] >= s.opts.MaxOpenStreamsPerTenant {
		return func(u *upload) bool { return u.tenant == tenant }, true
	}
	if s.open >= s.opts.MaxOpenStreams {
		return func(*upload) bool { return true }, true
	}
	return nil, false
}

// releaseSlot frees a slot that takeSlot(tenant) took.
func (s *byteStreamServer) releaseSlot(tenant string) {
	s.mu.Lock()
	s.releaseLocked(tenant)
	s.mu.Unlock()
}

// releaseLocked frees tenant's slot and hands free slots to the waiters
// that may take them, oldest first. Waiters it passes over are tenants at
// their share: they keep their place for a slot of their own.
func (s *byteStreamServer) releaseLocked(tenant string) {
	s.open--
	if tenant != "" {
		if s.openBy[tenant]--; s.openBy[tenant] == 0 {
			delete(s.openBy, tenant)
		}
	}
	for e := s.waiting.Front(); e != nil && s.open < s.opts.MaxOpenStreams; {
		next := e.Next()
		if w := e.Value.(*slotWaiter); s.mayTakeLocked(w.tenant) {
			s.takeLocked(w.tenant)
			w.granted = true
			s.leaveQueueLocked(w, e)
			close(w.ready)
		}
		e = next
	}
}

// offerParkedLocked wakes the oldest waiter that may abort the parked
// upload u (any parked upload when u is nil), so that it does rather than
// wait out its bound for a slot whose client has gone. park calls it with
// the upload it parked; a waiter leaving with such a wake-up unused calls
// it with nil, to pass it on.
func (s *byteStreamServer) offerParkedLocked(u *upload) {
	for e := s.waiting.Front(); e != nil; e = e.Next() {
		w := e.Value.(*slotWaiter)
		match, ok := s.mayDropLocked(w.tenant)
		if !ok || (u != nil && !match(u)) || (u == nil && !s.anyParkedLocked(match)) {
			continue
		}
		select {
		case w.parked <- struct{}{}:
		default: // already told
		}
		return
	}
}

// passOnParkedLocked offers the parked upload w was told of, if w leaves
// the queue without having aborted it, to the next waiter that may.
func (s *byteStreamServer) passOnParkedLocked(w *slotWaiter) {
	select {
	case <-w.parked:
		s.offerParkedLocked(nil)
	default:
	}
}

func (s *byteStreamServer) anyParkedLocked(match func(*upload) bool) bool {
	for _, u := range s.uploads {
		if !u.parkedAt.IsZero() && match(u) {
			return true
		}
	}
	return false
}

// oldestParkedLocked returns the parked upload, of those which match,
// whose idle time runs out first (upload.expires: the one idle longest, a
// Write that sent nothing not counting), holding its busy lock and with
// its idle timer stopped, or nil when none is parked. Ordered by when
// they were parked, uploads a client kept parking again without data came
// last, and others' went first.
func (s *byteStreamServer) oldestParkedLocked(match func(*upload) bool) *upload {
	var oldest *upload
	for _, u := range s.uploads {
		if !u.parkedAt.IsZero() && match(u) && (oldest == nil || u.expires.Before(oldest.expires)) {
			oldest = u
		}
	}
	// A stream resuming it holds busy and clears parkedAt under s.mu, so
	// this only fails against the idle timer, which then finds busy held.
	if oldest == nil || !oldest.busy.TryLock() {
		return nil
	}
	oldest.idle.Stop()
	oldest.parkedAt = time.Time{}
	oldest.released = make(chan struct{}) // closed when it is forgotten
	return oldest
}
