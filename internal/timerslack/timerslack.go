// Package timerslack sets how late the kernel may fire the timers of this
// process's threads (their timer slack, prctl(2) PR_SET_TIMERSLACK), and
// gives a child started from the calling thread the kernel's default back.
//
// Why: Go's system monitor (sysmon, one thread per process) sleeps 20 µs
// at a time for as long as any goroutine runs after the process has been
// idle, doubling only after fifty such sleeps. The farm's processes are
// busy in bursts of about a millisecond per action, so each burst woke it
// about fifty times: per genrule action of the Bazel fan-out, about 85
// times in `paddock up`, 26 in its runner and 60 in the sandbox spawner.
// On a paravirtualised VM every one of those wake-ups costs the host a
// switch in and out of the guest, which slowed the whole machine, the
// sandboxed commands included (see docs/benchmarks.md). With a slack of
// Farm the kernel lets each of those sleeps run up to half a millisecond
// late, and the bursts fit in a few wake-ups. Nothing the farm times needs
// finer than that: its deadlines and timeouts are milliseconds or more.
//
// A thread started later inherits the slack of the thread that starts it,
// and a process keeps its slack across execve; so a sandboxed command
// would inherit Farm from the spawner. WithDefault starts such children
// with Default instead, so that a build's own timers behave as anywhere
// else on the host.
package timerslack

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// Farm is the slack the farm's long-lived processes run with.
	Farm = 500 * time.Microsecond
	// Default is the kernel's own default slack (that of PID 1, which
	// every process inherits unless changed), which sandboxed commands
	// get back.
	Default = 50 * time.Microsecond
)

// Set sets the slack of every thread of this process to d. Call it early
// in main, before the process starts children; threads started later get
// d from their starter. Setting another thread's slack needs CAP_SYS_NICE:
// without it only the calling thread's is set, and Set says so in its
// error. A thread that ends meanwhile is passed over.
func Set(d time.Duration) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := setOwn(d); err != nil {
		return err
	}
	done := map[int]bool{unix.Gettid(): true}
	// Threads started while it walks: a few rounds find them (the runtime
	// starts its threads early, and few).
	for range 3 {
		tids, err := threads()
		if err != nil {
			return err
		}
		added := false
		for _, tid := range tids {
			if done[tid] {
				continue
			}
			done[tid], added = true, true
			if err := setThread(tid, d); err != nil {
				return err
			}
		}
		if !added {
			return nil
		}
	}
	return nil
}

// WithDefault runs start, which must start a child process from the
// calling OS thread (os/exec's Start, a clone), with that thread's slack at
// Default, and sets it back afterwards. The child and everything it starts
// then have Default. If the thread's slack is already Default, or cannot
// be read or changed (a kernel without PR_SET_TIMERSLACK), it only runs
// start: a child with the wider slack is better than no child.
func WithDefault(start func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	prev, err := Get()
	if err != nil || prev == Default || setOwn(Default) != nil {
		return start()
	}
	startErr := start()
	// Failing leaves this thread at Default, which is only slower: not
	// worth failing a start that worked for.
	_ = setOwn(prev)
	return startErr
}

// Get returns the calling thread's slack. The goroutine should be locked
// to its thread for the answer to mean anything.
func Get() (time.Duration, error) {
	ns, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	if err != nil {
		return 0, fmt.Errorf("get timer slack: %w", err)
	}
	return time.Duration(ns), nil
}

// Of returns the slack of thread tid (of any process this one may read).
func Of(tid int) (time.Duration, error) {
	b, err := os.ReadFile(threadFile(tid))
	if err != nil {
		return 0, err
	}
	ns, err := strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("timer slack of thread %d: %w", tid, err)
	}
	return time.Duration(ns), nil
}

func setOwn(d time.Duration) error {
	if err := unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(d.Nanoseconds()), 0, 0, 0); err != nil {
		return fmt.Errorf("set timer slack: %w", err)
	}
	return nil
}

// setThread writes thread tid's slack through /proc (the file is only
// under the thread's own /proc/TID, not under /proc/self/task/TID).
func setThread(tid int, d time.Duration) error {
	f, err := os.OpenFile(threadFile(tid), os.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // the thread has ended
	}
	if err != nil {
		return fmt.Errorf("timer slack of thread %d: %w", tid, err)
	}
	_, err = f.WriteString(strconv.FormatInt(d.Nanoseconds(), 10))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, syscall.ESRCH) {
		return nil // ended between the open and the write
	}
	if err != nil {
		return fmt.Errorf("timer slack of thread %d: %w", tid, err)
	}
	return nil
}

func threadFile(tid int) string { return "/proc/" + strconv.Itoa(tid) + "/timerslack_ns" }

// threads lists this process's thread ids.
func threads() ([]int, error) {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, fmt.Errorf("list threads: %w", err)
	}
	tids := make([]int, 0, len(ents))
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}
