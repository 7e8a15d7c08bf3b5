package storage

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
)

// errUploadBusy is claim's answer while another stream holds the upload
// of a name. Write waits for it when its stream starts from 0, and
// answers FAILED_PRECONDITION when it would resume.
var errUploadBusy = errors.New("the upload is being written by another stream")

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
