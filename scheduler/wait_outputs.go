package scheduler

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/storage"
)

// outputsGone reports whether owner's operation name is done with a
// successful result whose outputs the CAS no longer holds all of: it
// finished a while ago (completed_retention keeps it), and they have been
// evicted since. A WaitExecution then answers NOT_FOUND, as for an
// operation forgotten, and the client executes the action again: handed
// the result, Bazel (which calls WaitExecution after a broken stream, a
// farm restart say) failed the build on the outputs it could not fetch,
// where an Execute's cache lookup checks them (cachedResult). A CAS that
// cannot answer is no reason to say so.
func (s *Scheduler) outputsGone(ctx context.Context, name, owner string) bool {
	s.mu.Lock()
	v, ok := s.operation(name)
	s.mu.Unlock()
	res := v.response.GetResult()
	if !ok || v.owner != owner || !v.done || res == nil || v.response.GetStatus().GetCode() != int32(codes.OK) {
		return false
	}
	err := storage.CheckComplete(storage.WithInstance(ctx, v.instance), s.cas, v.action.Function(), res)
	return status.Code(err) == codes.NotFound
}
