// Package proctest reads the host's processes from /proc for tests that
// check what a sandbox or a role leaves behind: the live processes, their
// state and parent, the ones running as the uids a test gave its
// sandboxes, and whether a process has children. Processes that end while
// they are read are passed over.
package proctest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Process is a live process.
type Process struct {
	PID int
	UID int // the real uid
	// Cmdline is /proc/PID/cmdline as is: arguments ended by NUL bytes.
	Cmdline string
}

// PIDs lists the live processes' ids (none where /proc cannot be read).
func PIDs() []int {
	pids, _ := readPIDs()
	return pids
}

func readPIDs() ([]int, error) {
	ents, err := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out, err
}

// Stat is the state ("R", "S", "Z" ...) and parent of process pid, from
// /proc/PID/stat; ok is false where the process is gone.
func Stat(pid int) (state string, ppid int, ok bool) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, false
	}
	// The command name, in parentheses, may hold spaces and parentheses:
	// the fields that follow start after the last ')'.
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return "", 0, false
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 2 {
		return "", 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	return f[0], ppid, err == nil
}

// WithUIDIn lists the processes whose real uid is at least lo and below
// hi.
func WithUIDIn(t testing.TB, lo, hi int) []Process {
	t.Helper()
	pids, err := readPIDs()
	if err != nil {
		t.Fatal(err)
	}
	var out []Process
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		uid := -1
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
				if _, err := fmt.Sscan(f[1], &uid); err != nil {
					uid = -1 // unreadable: not in the range
				}
			}
		}
		if uid < lo || uid >= hi {
			continue
		}
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		out = append(out, Process{PID: pid, UID: uid, Cmdline: string(cmd)})
	}
	return out
}

// HasChildren reports whether any thread of process pid has a child.
func HasChildren(pid int) bool {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, task := range tasks {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, task.Name()))
		if strings.TrimSpace(string(b)) != "" {
			return true
		}
	}
	return false
}

// SelfCPU is the user and system CPU time this process has used so far,
// for benchmarks that report CPU per operation (client and server share
// the process in most of them, so both are counted).
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru) // cannot fail for RUSAGE_SELF
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
