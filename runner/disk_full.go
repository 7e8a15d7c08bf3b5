package runner

import (
	"errors"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// isDiskFull reports an error of a full filesystem: no blocks or no
// inodes left (ENOSPC), or the runner's user over a quota (EDQUOT). It
// looks for the errno, never at the message: errors from the sandbox's
// spawner carry theirs across its pipe.
func isDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// diskFullMessage is the one wording of a full disk for a client: step
// is what could not be done, in the client's terms. It says the disk is
// the worker's, as the worker's own checks do, and never names a host
// path: the client has no use for the worker's layout and should not
// learn it.
func diskFullMessage(step string) string {
	return "the worker's disk is full: " + step
}

// diskFull is the status of a step of setting up a sandbox that failed
// on a full disk: RESOURCE_EXHAUSTED, since the condition is temporary
// (space comes back as the worker's build directories and unused images
// go) and clients retry it, where INTERNAL told them not to. err, with
// the host path, stays its cause, which Run writes to the log.
func diskFull(step string, err error) error {
	return statusWithCause{status.New(codes.ResourceExhausted, diskFullMessage(step)), err}
}

// diskFullCause is the error behind a diskFull status, for the log.
func diskFullCause(err error) (error, bool) {
	var c statusWithCause
	if errors.As(err, &c) && c.st.Code() == codes.ResourceExhausted && isDiskFull(c.cause) {
		return c.cause, true
	}
	return nil, false
}
