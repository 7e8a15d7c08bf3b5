package storage

import (
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/internal/fdlimit"
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

// defaultMaxOpenStreams is a quarter of the process's open-file limit
// (at least 64): the rest stays for connections, batch requests, the
// worker's input roots and the scheduler's journal.
func defaultMaxOpenStreams() int { return fdlimit.Share(4, 64) }

// A tenant (a caller the auth policy names) holds at most
// MaxOpenStreamsPerTenant slots, half of them by default, so that one
// tenant's thousands of idle streams leave the others room: whatever it
// does, they share the rest. Callers with no tenant (no policy, or the
// farm's own workers) count only against the whole.

// takeSlot reserves a slot for a new read or upload of tenant. At a bound
// it aborts the upload parked longest to make room (its client has gone,
// and can start again from offset 0): any tenant's at the server's bound,
// the tenant's own at its share. It fails with RESOURCE_EXHAUSTED, which
// clients retry, when live streams hold every slot it may take.
func (s *byteStreamServer) takeSlot(tenant string) error {
	for {
		s.mu.Lock()
		full := s.open >= s.opts.MaxOpenStreams
		atShare := tenant != "" && s.openBy[tenant] >= s.opts.MaxOpenStreamsPerTenant
		if !full && !atShare {
			s.open++
			if tenant != "" {
				s.openBy[tenant]++
			}
			s.mu.Unlock()
			return nil
		}
		var victim *upload
		if atShare {
			victim = s.oldestParkedLocked(func(u *upload) bool { return u.tenant == tenant })
		} else {
			victim = s.oldestParkedLocked(func(*upload) bool { return true })
		}
		s.mu.Unlock()
		if victim == nil && atShare {
			return status.Errorf(codes.ResourceExhausted, "tenant %q has %d ByteStream reads and uploads in progress, as many as one tenant may have at once; retry later", tenant, s.opts.MaxOpenStreamsPerTenant)
		}
		if victim == nil {
			return status.Errorf(codes.ResourceExhausted, "%d ByteStream reads and uploads are in progress, as many as this server allows at once; retry later", s.opts.MaxOpenStreams)
		}
		s.abort(victim, errUploadAborted) // its Put returns, and frees its slot
		victim.busy.Unlock()
	}
}

// releaseSlot frees a slot that takeSlot(tenant) took.
func (s *byteStreamServer) releaseSlot(tenant string) {
	s.mu.Lock()
	s.open--
	if tenant != "" {
		if s.openBy[tenant]--; s.openBy[tenant] == 0 {
			delete(s.openBy, tenant)
		}
	}
	s.mu.Unlock()
}

// oldestParkedLocked returns the upload parked longest of those which
// match, holding its busy lock and with its idle timer stopped, or nil
// when none is parked.
func (s *byteStreamServer) oldestParkedLocked(match func(*upload) bool) *upload {
	var oldest *upload
	for _, u := range s.uploads {
		if !u.parkedAt.IsZero() && match(u) && (oldest == nil || u.parkedAt.Before(oldest.parkedAt)) {
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
	return oldest
}
