package storage

import (
	"cmp"
	"context"
	"errors"
	"time"

	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/auth"
	"github.com/paddock-build/paddock/digest"
)

// errUploadBusy is claim's answer while another stream holds the upload
// of a name. Write waits for it when its stream starts from 0, and
// answers FAILED_PRECONDITION when it would resume.
var errUploadBusy = errors.New("the upload is being written by another stream")

// errStoredMeanwhile is acquireOrWait's answer when the upload it waited
// for stored the blob: the stream completes at once.
var errStoredMeanwhile = errors.New("stored by another stream meanwhile")

// acquireOrWait is acquire for a Write stream. While another stream
// writes the same upload name, one that starts from 0 waits for it: a
// client that gives concurrent uploads of one blob the same uuid
// (BuildStream 1.6's push jobs do). Then it completes at once if the
// other stored the blob (errStoredMeanwhile: the spec's answer for a blob
// another upload completed), or takes its place. One that would resume is
// told FAILED_PRECONDITION: the bytes before its offset are not there yet.
func (s *byteStreamServer) acquireOrWait(ctx context.Context, rn digest.ResourceName, req *bytestream.WriteRequest) (*upload, error) {
	u, err := s.acquire(ctx, auth.TenantOf(ctx), rn, req)
	for errors.Is(err, errUploadBusy) && req.WriteOffset == 0 {
		if err := s.waitUntilFree(ctx, req.ResourceName); err != nil {
			return nil, err
		}
		if done, err := s.stored(ctx, rn); err != nil || done {
			return nil, cmp.Or(err, errStoredMeanwhile)
		}
		u, err = s.acquire(ctx, auth.TenantOf(ctx), rn, req)
	}
	if errors.Is(err, errUploadBusy) {
		return nil, status.Errorf(codes.FailedPrecondition, "resource_name %q is being written by another stream; resume once it has stopped (QueryWriteStatus)", req.ResourceName)
	}
	return u, err
}

// stored reports whether rn's blob is in the CAS.
func (s *byteStreamServer) stored(ctx context.Context, rn digest.ResourceName) (bool, error) {
	missing, err := s.opts.CAS.FindMissing(WithInstance(ctx, rn.InstanceName), []digest.Digest{rn.Digest})
	return err == nil && len(missing) == 0, err
}

// uploadFreePoll is how often waitUntilFree looks again.
const uploadFreePoll = 10 * time.Millisecond

// waitUntilFree waits until no stream holds the upload of name: it ended
// (stored, or aborted) or was parked. It polls, a map lookup each time:
// nothing signals an upload's end or parking, and trying its busy lock
// here could make a parked upload's idle timer, which tries it too, take
// it for resumed and never drop it.
// Waiting holds no stream slot; the caller's stream is counted by the
// connection's bound on calls like any other.
func (s *byteStreamServer) waitUntilFree(ctx context.Context, name string) error {
	t := time.NewTicker(uploadFreePoll)
	defer t.Stop()
	for {
		s.mu.Lock()
		u, ok := s.uploads[name]
		free := !ok || !u.parkedAt.IsZero() // a registered upload is a stream's until parked
		s.mu.Unlock()
		if free {
			return nil
		}
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-t.C:
		}
	}
}
