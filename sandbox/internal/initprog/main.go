// Command paddock-init is the first process of every native sandbox. The
// sandbox spawner (package sandbox) runs it from a sealed memfd holding
// this program, embedded in the paddock binary (sandbox/internal/initbin),
// cloned into new user, mount, pid, ipc, uts and (usually) network
// namespaces and born inside the sandbox's cgroup. It is small on purpose:
// it starts once per action, so it links only the Go runtime,
// golang.org/x/sys/unix and the plan codec; no JSON, no fmt, no os.
//
// Its life, on one locked OS thread:
//
//  1. read an initplan.Plan from fd 3, the control pipe (a warm init waits
//     here; if the pipe closes first, it exits quietly);
//  2. build the mount tree and pivot_root into it (rootfsBuilder);
//  3. hostname, loopback up, a fresh cgroup namespace rooted at its cgroup,
//     rlimits, umask, find the command in PATH;
//  4. no_new_privs, dumpable 0, bounding/inheritable capabilities, the
//     seccomp filter, close-on-exec on every descriptor above 2;
//  5. fork+exec the command as the plan's user, in a new session; if the
//     spawner has meanwhile written initplan.Terminate to the control pipe,
//     pass SIGTERM to every process of the sandbox (the spawner signals
//     the sandbox's processes itself after that, but could have looked
//     before the command existed);
//  6. reap every process until the command exits, then SIGKILL everything
//     left, reap it, close its output pipes and write an initplan.Status to
//     fd 4 (the spawner answers on that, before the init's own exit).
//
// When the init exits, the kernel kills anything left in the pid namespace,
// and the mount namespace (with every mount made here) goes with it.
package main

import (
	"errors"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/paddock-build/paddock/sandbox/internal/initplan"
)

const (
	controlFd = 3
	statusFd  = 4
)

func init() {
	// Capabilities, no_new_privs, the cgroup namespace and the
	// credentials the command is forked with are per thread.
	runtime.LockOSThread()
}

func main() {
	plan, err := readPlan()
	if err != nil {
		if errors.Is(err, errNoPlan) {
			syscall.Exit(0) // a warm init that was never used
		}
		report(&initplan.Status{Error: err.Error()})
		syscall.Exit(1)
	}
	st, err := runSandbox(plan)
	if err != nil {
		var ns *notStarted
		var ms *missingSource
		st = &initplan.Status{Error: err.Error(), NotStarted: errors.As(err, &ns), MissingSource: errors.As(err, &ms)}
	}
	report(st)
	if err != nil {
		syscall.Exit(1)
	}
	syscall.Exit(0)
}

var errNoPlan = errors.New("control pipe closed before a plan arrived")

// readPlan reads one framed plan from the control pipe.
func readPlan() (*initplan.Plan, error) {
	var header [initplan.FrameHeader]byte
	if n, err := readFull(controlFd, header[:]); err != nil || n < len(header) {
		if err == nil {
			err = errNoPlan
		}
		return nil, wrap("read plan", err)
	}
	size, err := initplan.FrameSize(header)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, size)
	if n, err := readFull(controlFd, buf); err != nil || n < size {
		if err == nil {
			err = errors.New("control pipe closed in the middle of a plan")
		}
		return nil, wrap("read plan", err)
	}
	return initplan.DecodePlan(buf)
}

// readFull reads until b is full or EOF; it returns how much it read.
func readFull(fd int, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := unix.Read(fd, b[n:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return n, err
		}
		if m == 0 {
			return n, nil
		}
		n += m
	}
	return n, nil
}

// report closes the command's output pipes (every process of the sandbox
// is gone; dropping our copies lets the spawner's readers finish) and
// writes st to the status pipe.
func report(st *initplan.Status) {
	unix.Close(1)
	unix.Close(2)
	b := initplan.EncodeStatus(st)
	for len(b) > 0 {
		n, err := unix.Write(statusFd, b)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			break
		}
		b = b[n:]
	}
	unix.Close(statusFd)
}

// wrapped adds context to an error and keeps it for errors.Is.
type wrapped struct {
	msg string
	err error
}

func (w *wrapped) Error() string { return w.msg + ": " + w.err.Error() }
func (w *wrapped) Unwrap() error { return w.err }

func wrap(msg string, err error) error { return &wrapped{msg, err} }

// missingSource marks an error as a bind source that does not exist.
type missingSource struct{ err error }

func (m *missingSource) Error() string { return m.err.Error() }
func (m *missingSource) Unwrap() error { return m.err }

// notStarted marks an error as the command's own (not found, not
// executable) rather than the sandbox's.
type notStarted struct{ err error }

func (n *notStarted) Error() string { return n.err.Error() }
func (n *notStarted) Unwrap() error { return n.err }
