// Package proctest reads the host's processes from /proc for tests that
// check what a sandbox leaves behind: the processes running as the uids a
// test gave its sandboxes, and whether a process has children. Processes
// that end while they are read are passed over.
package proctest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Process is a live process.
type Process struct {
	PID int
	UID int // the real uid
	// Cmdline is /proc/PID/cmdline as is: arguments ended by NUL bytes.
	Cmdline string
}

// WithUIDIn lists the processes whose real uid is at least lo and below
// hi.
func WithUIDIn(t testing.TB, lo, hi int) []Process {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []Process
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		uid := -1
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
				fmt.Sscan(f[1], &uid)
			}
		}
		if uid < lo || uid >= hi {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
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
