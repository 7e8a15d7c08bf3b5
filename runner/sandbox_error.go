package runner

import (
	"errors"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/rev2"
	"github.com/paddock-build/paddock/sandbox"
)

// sandboxError maps a launcher error: a full disk (output files, bundle,
// set-up in the spawner, whose errors keep their errno across its pipe)
// is RESOURCE_EXHAUSTED without the host path (diskFull), a command that
// cannot be started is the action's fault (INVALID_ARGUMENT, as exec
// failures are for REv2 servers), a spawner that died is retryable, the
// rest internal. The status keeps err as its cause (statusWithCause), so
// that Run can still tell a vanished mount source apart, and log what
// diskFull leaves out of the message.
func sandboxError(err error) error {
	if isDiskFull(err) {
		return diskFull("setting up the sandbox", err)
	}
	st := status.Newf(codes.Internal, "sandbox: %v", err)
	switch {
	case errors.Is(err, sandbox.ErrCommandNotStarted) && tooLongForExec(err):
		// Execute counts the Command's own strings; the kernel counts the
		// program's resolved path and the runner's default_environment
		// too, so a Command just under the bound can still fail here.
		st = status.Newf(codes.InvalidArgument, "cannot start the command: command.arguments and command.environment_variables, with the program's path and the runner's default_environment, are past Linux's ARG_MAX (%d bytes); pass long argument lists in a parameter file", rev2.MaxArgBytes)
	case errors.Is(err, sandbox.ErrCommandNotStarted):
		st = status.Newf(codes.InvalidArgument, "cannot start the command: %v", err)
	case errors.Is(err, sandbox.ErrSpawnerGone):
		st = status.Newf(codes.Unavailable, "sandbox: %v", err)
	}
	return statusWithCause{st, err}
}

// statusWithCause is a gRPC status that unwraps to the error it reports.
type statusWithCause struct {
	st    *status.Status
	cause error
}

func (e statusWithCause) Error() string              { return e.st.Err().Error() }
func (e statusWithCause) GRPCStatus() *status.Status { return e.st }
func (e statusWithCause) Unwrap() error              { return e.cause }

// tooLongForExec reports an execve that failed with E2BIG. The sandbox's
// init reports why its command did not start as text, strerror's
// ("Argument list too long") or Go's, with no errno beside it.
func tooLongForExec(err error) bool {
	return strings.Contains(strings.ToLower(err.Error()), "argument list too long")
}
