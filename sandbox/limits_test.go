package sandbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3"
)

// TestForkBombKilledAfterGrace: a fork bomb whose processes ignore SIGTERM
// outlives the timeout's SIGTERM; after the grace period the kill path
// (freeze the cgroup, SIGKILL everything, thaw) ends it, the result says
// so, and nothing of it is left.
func TestForkBombKilledAfterGrace(t *testing.T) {
	l := newTestLauncher(t, Options{KillGrace: 500 * time.Millisecond})
	if cgroups.Mode() != cgroups.Unified && !slices.Contains(v1Subsystems, "freezer") {
		t.Fatalf("v1 host without the freezer among the sandbox's controllers %v", v1Subsystems)
	}
	// No process of the bomb dies of SIGTERM, and every one of them forks
	// as fast as it can.
	spec := testSpec("/bin/probe", "forkbomb")
	limit := int64(128)
	spec.Linux.Resources.Pids.Limit = &limit
	out := runSpec(t, l, spec, Request{Timeout: time.Second})
	if !out.TimedOut || !out.Killed || !out.InitDied || out.Signal != syscall.SIGKILL {
		t.Errorf("timed out %v killed %v init died %v signal %v; want the kill path: true true true SIGKILL",
			out.TimedOut, out.Killed, out.InitDied, out.Signal)
	}
	if out.Cgroup.PidsLimitHits == 0 {
		t.Errorf("the bomb never hit the pids limit: %+v", out.Cgroup)
	}
	t.Logf("wall %v (timeout 1s + grace 0.5s), cgroup %+v", out.WallTime, out.Cgroup)
	runsNormally(t, l)
}

// TestCloseRemovesEveryCgroup: after Close, no sandbox cgroup and no
// parent cgroup is left in any hierarchy, whether the spawner exited
// normally or had died (a Ctrl-C in a terminal once killed it, since it
// shared the runner's process group; now it has its own).
func TestCloseRemovesEveryCgroup(t *testing.T) {
	requireRoot(t)
	if cgroups.Mode() == cgroups.Unified {
		t.Skip("checks v1 hierarchies; this host is unified")
	}
	for _, spawnerDies := range []bool{false, true} {
		name := map[bool]string{false: "graceful", true: "spawner died"}[spawnerDies]
		t.Run(name, func(t *testing.T) {
			parent := "paddock-sandbox-close-test"
			l, err := New(Options{CgroupParent: parent})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = l.Close() }() // closed again below: already closed then
			pid := l.b.(*nativeBackend).spawnerPid()
			if pg, _ := syscall.Getpgid(pid); pg == syscall.Getpgrp() {
				t.Errorf("the spawner shares the caller's process group %d: a terminal's Ctrl-C would kill it", pg)
			}
			var wg sync.WaitGroup
			for range 3 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					bundle := writeBundle(t, testSpec("/bin/true"))
					if _, err := l.Run(context.Background(), Request{Bundle: bundle}); err != nil {
						t.Error(err)
					}
				}()
			}
			wg.Wait()
			if n := countSandboxCgroups(t, parent); n == 0 {
				t.Fatal("no sandbox cgroup while the launcher is open: the check below would prove nothing")
			}
			if spawnerDies {
				if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			}
			if err := l.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			for _, sub := range v1Subsystems {
				p := filepath.Join(cgroupRoot, sub, parent)
				if _, err := os.Stat(p); err == nil {
					ents, _ := os.ReadDir(p)
					t.Errorf("after Close, cgroup %s is left (%d entries)", p, len(ents))
				}
			}
		})
	}
}

// countSandboxCgroups counts the sandbox cgroups under parent, in every
// v1 hierarchy.
func countSandboxCgroups(t *testing.T, parent string) int {
	t.Helper()
	n := 0
	for _, sub := range v1Subsystems {
		ents, _ := os.ReadDir(filepath.Join(cgroupRoot, sub, parent))
		for _, e := range ents {
			if e.IsDir() {
				n++
			}
		}
	}
	return n
}

// TestKillNow: a Run cancelled with ErrKillNow as the cause is killed at
// once: no SIGTERM (which this command would ignore, and so hold out the
// grace period of a minute), Canceled and Killed in the result, and no
// process of it left. The sandbox runs in a pooled cgroup reset a moment
// before (a v1 kernel once served the kill a stale, empty process list
// read at that reset).
func TestKillNow(t *testing.T) {
	l := newTestLauncher(t, Options{KillGrace: time.Minute, WarmInits: -1})
	if out := runSpec(t, l, testSpec("/bin/true"), Request{}); out.ExitCode != 0 {
		t.Fatalf("warm-up sandbox: %+v", out.Result)
	}
	bundle := writeBundle(t, testSpec("/bin/sh", "-c", `trap "" TERM; echo started; while :; do :; done`))
	stdout := filepath.Join(bundle, "stdout")
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	done := make(chan *Result, 1)
	go func() {
		res, err := l.Run(ctx, Request{Bundle: bundle, Stdout: stdout})
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	deadline := time.Now().Add(30 * time.Second)
	for b, _ := os.ReadFile(stdout); string(b) != "started\n"; b, _ = os.ReadFile(stdout) {
		if time.Now().After(deadline) {
			t.Fatal("the command never started")
		}
		time.Sleep(5 * time.Millisecond) // poll
	}
	cancel(ErrKillNow)
	select {
	case res := <-done:
		if res == nil || !res.Canceled || !res.Killed || res.Signal != syscall.SIGKILL {
			t.Errorf("result %+v, want canceled and killed by SIGKILL", res)
		}
		// What was written before the kill is kept, though the capture
		// no longer waits for every writer to exit.
		if b, _ := os.ReadFile(stdout); res != nil && (res.Stdout.Bytes != 8 || string(b) != "started\n") {
			t.Errorf("stdout %q (%+v), want the line written before the kill", b, res.Stdout)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the sandbox was not killed within 30s (its grace period is a minute)")
	}
	runsNormally(t, l)
}

// TestProcsListFresh: a v1 cgroup's process list is read afresh: a
// process started right after a reset (which read the list while the
// cgroup was empty) is listed, and so killed by killAll. (The kernel
// serves a kept cgroup.procs descriptor its old list for a second.)
func TestProcsListFresh(t *testing.T) {
	requireRoot(t)
	if cgroups.Mode() == cgroups.Unified {
		t.Skip("v1 only; this host is unified")
	}
	pool, parent, cg := pooledCgroup(t, "-procs")
	defer pool.put(parent, cg, false) // kills what is left, removes it if busy
	if !cg.reset() {
		t.Fatal("an empty cgroup could not be reset")
	}
	cmd := startSleep(t, cg)
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	procs, _ := cg.(*cgroupV1).procs()
	if !strings.Contains(" "+strings.Join(strings.Fields(string(procs)), " ")+" ", fmt.Sprintf(" %d ", cmd.Process.Pid)) {
		t.Errorf("cgroup.procs %q does not list the process %d started after the reset", procs, cmd.Process.Pid)
	}
	cg.killAll()
	select {
	case err := <-waited:
		if err == nil || !strings.Contains(err.Error(), "killed") {
			t.Errorf("process after killAll: %v, want killed", err)
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("killAll did not kill the process started after the reset")
	}
}
