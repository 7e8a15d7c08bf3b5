package sandbox

import (
	"fmt"
	"syscall"
	"time"

	"github.com/paddock-build/paddock/sandbox/internal/initplan"
)

// Result is what happened to one sandboxed command. A non-zero exit, a
// signal, an OOM kill or a timeout are results, not errors.
type Result struct {
	// ExitCode is the command's exit status, or -1 when a signal killed it.
	ExitCode int
	// Signal is the signal that killed the command, 0 if it exited.
	Signal syscall.Signal
	// OOMKilled: the kernel's OOM killer killed a process in the sandbox's
	// cgroup (not known for external runtimes).
	OOMKilled bool
	// TimedOut: Request.Timeout passed and the sandbox was terminated.
	TimedOut bool
	// Canceled: the caller's context was done and the sandbox was terminated.
	Canceled bool
	// Killed: after SIGTERM, the sandbox did not end within the grace
	// period and was SIGKILLed (frozen first, so that nothing in it could
	// fork meanwhile).
	Killed bool
	// InitDied: the sandbox's init died before it reported (SIGKILLed after
	// the grace period, or killed by the OOM killer), which ended every
	// process of the sandbox. The command's own status is unknown; ExitCode
	// is -1 and Signal the init's.
	InitDied bool
	// Usage is the rusage of every process of the sandbox (the command and
	// everything it forked), as reaped by the sandbox's init.
	Usage Usage
	// Cgroup holds the figures of the sandbox's cgroup (native launcher).
	Cgroup CgroupStats
	// Stdout and Stderr say how much output was kept and whether the cap
	// was hit.
	Stdout, Stderr OutputStats
	// WallTime runs from the start of the sandbox to the end of its last
	// process.
	WallTime time.Duration
}

// Usage is a process tree's resource usage (getrusage(2)).
type Usage struct {
	UserTime, SystemTime time.Duration
	MaxRSSBytes          int64
	MinorFaults          int64
	MajorFaults          int64
	VoluntaryCtxSwitches int64
	InvoluntaryCtxSwitch int64
}

// usageFromRusage converts getrusage(2)/wait4(2) figures; nil is zero.
func usageFromRusage(r *syscall.Rusage) Usage {
	if r == nil {
		return Usage{}
	}
	return Usage{
		UserTime:             time.Duration(r.Utime.Nano()),
		SystemTime:           time.Duration(r.Stime.Nano()),
		MaxRSSBytes:          r.Maxrss * 1024,
		MinorFaults:          r.Minflt,
		MajorFaults:          r.Majflt,
		VoluntaryCtxSwitches: r.Nvcsw,
		InvoluntaryCtxSwitch: r.Nivcsw,
	}
}

// OutputStats describes one captured output stream.
type OutputStats struct {
	// Bytes written to the destination file (at most the limit).
	Bytes int64
	// Truncated: the command wrote more than the limit; the excess was
	// read and discarded so the command was never blocked by it.
	Truncated bool
	// Discarded is how many bytes beyond the limit were dropped.
	Discarded int64
}

// fromStatus fills res from the init's report, or returns the error it
// reports (the command never ran).
func fromStatus(data []byte, res *Result) error {
	st, err := initplan.DecodeStatus(data)
	if err != nil {
		return fmt.Errorf("%w: sandbox init: %w", ErrSetup, err)
	}
	switch {
	case st.Error != "" && st.NotStarted:
		return fmt.Errorf("%w: %s", ErrCommandNotStarted, st.Error)
	case st.Error != "" && st.MissingSource:
		return fmt.Errorf("%w: %w: %s", ErrSetup, ErrMountSourceMissing, st.Error)
	case st.Error != "":
		return fmt.Errorf("%w: %s", ErrSetup, st.Error)
	}
	res.ExitCode, res.Signal = int(st.ExitCode), syscall.Signal(st.Signal)
	res.Usage = Usage{
		UserTime:             time.Duration(st.UserNanos),
		SystemTime:           time.Duration(st.SystemNanos),
		MaxRSSBytes:          st.MaxRSSKiB * 1024,
		MinorFaults:          st.MinorFaults,
		MajorFaults:          st.MajorFaults,
		VoluntaryCtxSwitches: st.VoluntarySwitches,
		InvoluntaryCtxSwitch: st.InvoluntarySwitches,
	}
	return nil
}
