package storage

import (
	"cmp"
	"context"
	"errors"
	"time"

	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/auth"
	"github.com/paddock-build/paddock/digest"
)

// errUploadBusy is claim's answer while another stream holds the upload
// of a name: Write waits for it (acquireOrWait).
var errUploadBusy = errors.New("the upload is being written by another stream")

// errStoredMeanwhile is acquireOrWait's answer when the upload it waited
// for stored the blob: the stream completes at once.
var errStoredMeanwhile = errors.New("stored by another stream meanwhile")

// acquireOrWait is acquire for a Write stream. While another stream
// writes the same upload name, it waits for it: a client that gives
// concurrent uploads of one blob the same uuid (BuildStream 1.6's push
// jobs do), or one resuming while the stream that broke still hands its
// last bytes to the Put (told FAILED_PRECONDITION, Bazel gave up). Then
// it completes at once if the other stored the blob (errStoredMeanwhile:
// the spec's answer for a blob another upload completed), or takes its
// place: from 0, or resuming where the other left it.
func (s *byteStreamServer) acquireOrWait(ctx context.Context, rn digest.ResourceName, req *bytestream.WriteRequest) (*upload, error) {
	u, err := s.acquire(ctx, auth.TenantOf(ctx), rn, req)
	for errors.Is(err, errUploadBusy) {
		if err := s.waitUntilFree(ctx, auth.TenantOf(ctx), req.ResourceName, int64(proto.Size(req))); err != nil {
			return nil, err
		}
		if done, err := s.stored(ctx, rn); err != nil || done {
			return nil, cmp.Or(err, errStoredMeanwhile)
		}
		u, err = s.acquire(ctx, auth.TenantOf(ctx), rn, req)
	}
	return u, err
}

// stored reports whether rn's blob is in the CAS.
func (s *byteStreamServer) stored(ctx context.Context, rn digest.ResourceName) (bool, error) {
	missing, err := s.opts.CAS.FindMissing(WithInstance(ctx, rn.InstanceName), []digest.Digest{rn.Digest})
	return err == nil && len(missing) == 0, err
}

// maxSameNameWait bounds how long a Write waits for another stream's
// upload of the same name: past it, UNAVAILABLE, which clients retry.
// Long enough for a large blob's upload, short enough that a first upload
// trickling a byte at a time does not hold its waiters for good.
const maxSameNameWait = time.Minute

// waitUntilFree waits until no stream holds the upload of name: it ended
// (stored, or aborted) or was parked. The waiting stream holds held bytes
// of its first message and is a waiter of tenant: it counts against the
// bounds of Writes waiting for a slot (mayWaitLocked: the whole queue's,
// the tenant's share of it, and maxWaitingWriteBytes), and past them, or
// past maxSameNameWait, it is refused. It holds no slot, and wakes only
// when the upload of its name is let go (upload.released).
func (s *byteStreamServer) waitUntilFree(ctx context.Context, tenant, name string, held int64) error {
	s.mu.Lock()
	if !s.mayWaitLocked(tenant, held) {
		err := s.waitRefusalLocked(tenant, name, held)
		s.mu.Unlock()
		return err
	}
	s.joinWaitersLocked(tenant, held, 1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.joinWaitersLocked(tenant, -held, -1)
		s.mu.Unlock()
	}()
	timeout := time.NewTimer(maxSameNameWait)
	defer timeout.Stop()
	for {
		s.mu.Lock()
		u, ok := s.uploads[name]
		var released chan struct{}
		if ok && u.parkedAt.IsZero() { // a registered upload is a stream's until parked
			released = u.released
		}
		s.mu.Unlock()
		if released == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-timeout.C:
			return status.Errorf(codes.Unavailable, "resource_name %q has been written by another stream for %v; retry", name, maxSameNameWait)
		case <-released:
		}
	}
}

// joinWaitersLocked adds (n 1) or takes away (n -1) a same-name waiter
// of tenant holding held bytes, in the counts the slot waiters' bounds
// read.
func (s *byteStreamServer) joinWaitersLocked(tenant string, held int64, n int) {
	s.countWaiterLocked(tenant, held, n)
	s.sameNameWaiting += n
}

// releaseLocked closes u.released, once: the stream holding u let it go.
func releaseLocked(u *upload) {
	if u.released != nil {
		close(u.released)
		u.released = nil
	}
}
