package sandbox

import "errors"

// Errors Run wraps, so that callers can tell them apart with errors.Is
// (they cross the spawner's process boundary as an errorKind plus a
// message).
var (
	// ErrSetup: the sandbox could not be set up (spec, mounts, cgroup,
	// namespaces); its command never ran.
	ErrSetup = errors.New("sandbox setup failed")
	// ErrCommandNotStarted: the sandbox was set up but its command could not
	// be started (not found in PATH, not executable).
	ErrCommandNotStarted = errors.New("the command could not be started")
	// ErrSpawnerGone: the spawner process died; the next Run starts another.
	ErrSpawnerGone = errors.New("sandbox spawner exited")
)

// errorKind names, on the spawner's wire, the sentinel an error wraps.
type errorKind string

const (
	kindNone        errorKind = ""
	kindSetup       errorKind = "setup"
	kindNotStarted  errorKind = "not-started"
	kindSpawnerGone errorKind = "spawner"
)

// sentinels maps the kinds to their errors. Constant table.
var sentinels = map[errorKind]error{
	kindSetup:       ErrSetup,
	kindNotStarted:  ErrCommandNotStarted,
	kindSpawnerGone: ErrSpawnerGone,
}

// kindOf is the kind of the sentinel err wraps, or kindNone.
func kindOf(err error) errorKind {
	for k, e := range sentinels {
		if errors.Is(err, e) {
			return k
		}
	}
	return kindNone
}

// kindError rebuilds an error from the spawner's reply. The message already
// names the sentinel (it is err.Error() of the original), so only the chain
// is restored.
func kindError(kind errorKind, msg string) error {
	if e, ok := sentinels[kind]; ok {
		return wrapped{e, msg}
	}
	return errors.New(msg)
}

// wrapped is an error with the message msg that unwraps to err.
type wrapped struct {
	err error
	msg string
}

func (w wrapped) Error() string { return w.msg }
func (w wrapped) Unwrap() error { return w.err }
