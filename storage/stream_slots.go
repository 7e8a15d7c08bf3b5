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

// takeSlot reserves a slot for a new read or upload. At the bound it
// aborts the upload parked longest to make room (its client has gone, and
// can start again from offset 0), and fails with RESOURCE_EXHAUSTED,
// which clients retry, when live streams hold every slot.
func (s *byteStreamServer) takeSlot() error {
	for {
		s.mu.Lock()
		if s.open < s.opts.MaxOpenStreams {
			s.open++
			s.mu.Unlock()
			return nil
		}
		victim := s.oldestParkedLocked()
		s.mu.Unlock()
		if victim == nil {
			return status.Errorf(codes.ResourceExhausted, "%d ByteStream reads and uploads are in progress, as many as this server allows at once; retry later", s.opts.MaxOpenStreams)
		}
		s.abort(victim, errUploadAborted) // its Put returns, and frees its slot
		victim.busy.Unlock()
	}
}

// releaseSlot frees a slot taken by takeSlot.
func (s *byteStreamServer) releaseSlot() {
	s.mu.Lock()
	s.open--
	s.mu.Unlock()
}

// oldestParkedLocked returns the upload parked longest, holding its busy
// lock and with its idle timer stopped, or nil when none is parked.
func (s *byteStreamServer) oldestParkedLocked() *upload {
	var oldest *upload
	for _, u := range s.uploads {
		if !u.parkedAt.IsZero() && (oldest == nil || u.parkedAt.Before(oldest.parkedAt)) {
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
