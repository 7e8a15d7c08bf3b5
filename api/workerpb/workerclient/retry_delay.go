package workerclient

import (
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// maxRefusedDelay bounds the pause between attempts that the scheduler
// refused: slow enough not to hammer it, short enough that a worker
// restarted after a crash of its machine, refused until the scheduler has
// seen its previous process's lease run out, is back soon after.
const maxRefusedDelay = 10 * time.Second

// isRefusal reports whether err is an answer that trying again at once
// will not change: the server is not a scheduler (UNIMPLEMENTED), it
// refuses the worker (ALREADY_EXISTS: another process uses its id;
// PERMISSION_DENIED, UNAUTHENTICATED; INVALID_ARGUMENT,
// FAILED_PRECONDITION). A connection that cannot be made, or a session
// that broke or was ended (UNAVAILABLE, ABORTED), is not one: the
// scheduler may be back any moment, and a worker that is slow to return
// has its actions requeued after reconnect_grace.
func isRefusal(err error) bool {
	switch status.Code(err) {
	case codes.AlreadyExists, codes.Unimplemented, codes.PermissionDenied, codes.Unauthenticated,
		codes.InvalidArgument, codes.FailedPrecondition:
		return true
	}
	return false
}

// retryDelay is the pause before the next attempt after refused refusals
// in a row: base after anything else and after the first refusal (a
// restarted worker may register before the scheduler has seen its
// previous process go), then doubling up to maxRefusedDelay, so that a
// worker that cannot get in retries slowly.
func retryDelay(base time.Duration, refused int) time.Duration {
	d := base
	for i := 1; i < refused && d < maxRefusedDelay; i++ {
		d *= 2
	}
	return min(d, maxRefusedDelay)
}
