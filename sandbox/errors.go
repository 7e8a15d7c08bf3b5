package sandbox

import (
	"errors"
	"syscall"
)

// Errors Run wraps, so that callers can tell them apart with errors.Is
// (they cross the spawner's process boundary as an errorKind, the errno
// the error wraps, and a message).
var (
	// ErrSetup: the sandbox could not be set up (spec, mounts, cgroup,
	// namespaces); its command never ran.
	ErrSetup = errors.New("sandbox setup failed")
	// ErrMountSourceMissing: a bind mount's source does not exist (it may
	// have gone since the caller planned the mount: trying again with a
	// fresh plan is safe, nothing ran). Errors wrapping it wrap ErrSetup
	// too.
	ErrMountSourceMissing = errors.New("a bind mount's source does not exist")
	// ErrCommandNotStarted: the sandbox was set up but its command could not
	// be started (not found in PATH, not executable).
	ErrCommandNotStarted = errors.New("the command could not be started")
	// ErrSpawnerGone: the spawner process died; the next Run starts another.
	ErrSpawnerGone = errors.New("sandbox spawner exited")
	// ErrKillNow is not returned: a caller cancels a Run's context with it
	// as the cause (context.WithCancelCause) to have the native launcher
	// kill the sandbox at once (frozen, every process SIGKILLed), without
	// SIGTERM and grace period: for a sandbox past a limit, which must not
	// go on for the grace period. Result.Canceled and Killed are set. An
	// external runtime treats it as a plain cancellation.
	ErrKillNow = errors.New("sandbox killed at once")
)

// errorKind names, on the spawner's wire (one byte), the sentinels an
// error wraps.
type errorKind uint8

const (
	kindNone errorKind = iota
	kindSetup
	kindMountSource
	kindNotStarted
	kindSpawnerGone
)

// kinds lists each kind with the sentinels it stands for, the most
// specific first. Constant table.
var kinds = []struct {
	kind      errorKind
	sentinels []error
}{
	{kindMountSource, []error{ErrSetup, ErrMountSourceMissing}},
	{kindSetup, []error{ErrSetup}},
	{kindNotStarted, []error{ErrCommandNotStarted}},
	{kindSpawnerGone, []error{ErrSpawnerGone}},
}

// kindOf is the most specific kind whose sentinels err all wraps, or
// kindNone.
func kindOf(err error) errorKind {
	for _, k := range kinds {
		all := true
		for _, s := range k.sentinels {
			all = all && errors.Is(err, s)
		}
		if all {
			return k.kind
		}
	}
	return kindNone
}

// errnoOf is the errno err wraps (the first in its chain), or 0. It
// crosses the spawner's boundary beside the kind, so that a caller can
// still tell, say, a full disk (ENOSPC, EDQUOT) while creating the
// output files from any other set-up failure, as it could in process.
func errnoOf(err error) syscall.Errno {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return 0
}

// kindError rebuilds an error from the spawner's reply. The message already
// names the sentinels and the errno (it is err.Error() of the original),
// so only the chain is restored: the kind's sentinels, and errno unless 0.
func kindError(kind errorKind, errno syscall.Errno, msg string) error {
	var errs []error
	for _, k := range kinds {
		if k.kind == kind {
			errs = append(errs, k.sentinels...)
		}
	}
	if errno != 0 {
		errs = append(errs, errno)
	}
	if len(errs) == 0 {
		return errors.New(msg)
	}
	return wrapped{errs, msg}
}

// wrapped is an error with the message msg that unwraps to errs.
type wrapped struct {
	errs []error
	msg  string
}

func (w wrapped) Error() string   { return w.msg }
func (w wrapped) Unwrap() []error { return w.errs }
