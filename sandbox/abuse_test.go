package sandbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// runsNormally checks that a plain sandbox still works after an abusive
// one, and that no process of any test sandbox is left on the host.
func runsNormally(t *testing.T, l *Launcher) {
	t.Helper()
	out := runSpec(t, l, testSpec("/bin/probe", "exit", "0"), Request{})
	if out.ExitCode != 0 || strings.TrimSpace(out.stdout) != "to stdout" {
		t.Errorf("next sandbox: exit %d signal %v stdout %q", out.ExitCode, out.Signal, out.stdout)
	}
	if ps := sandboxProcesses(t); len(ps) != 0 {
		t.Errorf("sandbox processes left on the host: %q", ps)
	}
}

// TestForkBombContained: a shell fork bomb stops at the pids limit (the
// cgroup never holds more), is ended by the timeout, and leaves nothing.
func TestForkBombContained(t *testing.T) {
	l := newTestLauncher(t, Options{KillGrace: 500 * time.Millisecond})
	// The top-level shell keeps running (a builtin loop needs no fork)
	// while the bomb grows.
	spec := testSpec("/bin/sh", "-c", "f() { f | f & }; f; while :; do :; done")
	limit := int64(64)
	spec.Linux.Resources.Pids.Limit = &limit
	out := runSpec(t, l, spec, Request{Timeout: 1500 * time.Millisecond})
	// How it ends (the timeout, or the shell giving up when fork fails) is
	// incidental: what matters is that it never exceeds the limit and
	// leaves nothing behind (runsNormally checks the host).
	if out.Cgroup.PidsLimitHits == 0 {
		t.Errorf("pids limit never hit: %+v", out.Cgroup)
	}
	if out.Cgroup.PidsPeak > uint64(limit) {
		t.Errorf("pids peak %d above limit %d", out.Cgroup.PidsPeak, limit)
	}
	t.Logf("cgroup %+v, wall %v, timed out %v", out.Cgroup, out.WallTime, out.TimedOut)
	runsNormally(t, l)
}

// TestMemoryHogOOMKilled: a process allocating past the memory limit is
// OOM-killed and the result says so.
func TestMemoryHogOOMKilled(t *testing.T) {
	l := newTestLauncher(t, Options{})
	spec := testSpec("/bin/probe", "hog", "512")
	limit := int64(64 << 20)
	spec.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &limit}
	out := runSpec(t, l, spec, Request{Timeout: 30 * time.Second})
	if !out.OOMKilled || out.Signal != syscall.SIGKILL {
		t.Errorf("OOMKilled %v signal %v, want true, SIGKILL (%+v)", out.OOMKilled, out.Signal, out.Result)
	}
	// cgroup v1 charges in batches and can record a peak a few pages past
	// the limit before reclaim or the OOM killer acts; far past means the
	// limit was not applied.
	if slack := uint64(256 << 10); out.Cgroup.MemoryPeakBytes > uint64(limit)+slack {
		t.Errorf("memory peak %d above limit %d (+%d slack)", out.Cgroup.MemoryPeakBytes, limit, slack)
	}
	runsNormally(t, l)
}

// TestCPUSpinTimedOut: a command spinning past its timeout is terminated
// with SIGTERM and reported as timed out; one that ignores SIGTERM is
// SIGKILLed after the grace period and reported as killed.
//
// The SIGTERM cases get a grace period far longer than they need: the
// command dies at once of SIGTERM, but the init still has to reap it and
// report, and on a loaded machine that took longer than a short grace,
// whose SIGKILL then decided the result (a verdict that hung on the
// machine's speed).
func TestCPUSpinTimedOut(t *testing.T) {
	l := newTestLauncher(t, Options{KillGrace: 300 * time.Millisecond})
	t.Run("SIGTERM", func(t *testing.T) {
		l := newTestLauncher(t, Options{KillGrace: 20 * time.Second})
		out := runSpec(t, l, testSpec("/bin/probe", "spin"), Request{Timeout: 300 * time.Millisecond})
		if !out.TimedOut || out.Killed || out.Signal != syscall.SIGTERM {
			t.Errorf("timed out %v killed %v signal %v, want true false SIGTERM", out.TimedOut, out.Killed, out.Signal)
		}
		if out.Usage.UserTime <= 0 || out.Cgroup.CPUTime <= 0 {
			t.Errorf("spin's CPU time not reported: %+v %+v", out.Usage, out.Cgroup)
		}
		runsNormally(t, l)
	})
	t.Run("ignores SIGTERM", func(t *testing.T) {
		spec := testSpec("/bin/sh", "-c", `trap "" TERM; while :; do :; done`)
		out := runSpec(t, l, spec, Request{Timeout: 300 * time.Millisecond})
		if !out.TimedOut || !out.Killed || out.Signal != syscall.SIGKILL {
			t.Errorf("timed out %v killed %v signal %v, want true true SIGKILL", out.TimedOut, out.Killed, out.Signal)
		}
		runsNormally(t, l)
	})
}

// runSleep runs a long sleep on a new launcher with kill grace period
// grace, under the context newCtx makes once the launcher is ready (a
// context that ends the sleep); it returns the launcher and the result.
func runSleep(t *testing.T, grace time.Duration, newCtx func() (context.Context, context.CancelFunc)) (*Launcher, *Result) {
	t.Helper()
	l := newTestLauncher(t, Options{KillGrace: grace})
	bundle := writeBundle(t, testSpec("/bin/sleep", "1000"))
	ctx, cancel := newCtx()
	defer cancel()
	res, err := l.Run(ctx, Request{Bundle: bundle})
	if err != nil {
		t.Fatal(err)
	}
	return l, res
}

// TestCancel: cancelling the context terminates the sandbox; Run still
// returns its result, marked canceled.
// The grace period is long (see TestCPUSpinTimedOut): with 300ms, a
// loaded machine once reported SIGKILL.
func TestCancel(t *testing.T) {
	l, res := runSleep(t, 20*time.Second, func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), 200*time.Millisecond)
	})
	if !res.Canceled || res.TimedOut || res.Signal != syscall.SIGTERM {
		t.Errorf("canceled %v timed out %v signal %v", res.Canceled, res.TimedOut, res.Signal)
	}
	runsNormally(t, l)
}

// TestCancelBeforeStart: a cancellation that comes before the command
// exists (here: the context is done before Run) still ends it with SIGTERM
// at once, rather than letting it run until the grace period's SIGKILL.
func TestCancelBeforeStart(t *testing.T) {
	l, res := runSleep(t, 30*time.Second, func() (context.Context, context.CancelFunc) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		return ctx, cancel
	})
	if !res.Canceled || res.Killed || res.Signal != syscall.SIGTERM {
		t.Errorf("canceled %v killed %v signal %v, want true false SIGTERM", res.Canceled, res.Killed, res.Signal)
	}
	runsNormally(t, l)
}

// TestDaemonsGone: processes that detach (setsid, double fork, ignoring
// SIGHUP) are all killed when the command exits; Run does not wait for them.
func TestDaemonsGone(t *testing.T) {
	l := newTestLauncher(t, Options{})
	script := `trap "" HUP; setsid sleep 1001 & (sleep 1002 &) & (setsid sh -c "sleep 1003 &" &); echo started`
	// Had Run waited for the sleeps, the 20s timeout would have ended it.
	out := runSpec(t, l, testSpec("/bin/sh", "-c", script), Request{Timeout: 20 * time.Second})
	if out.ExitCode != 0 || strings.TrimSpace(out.stdout) != "started" || out.TimedOut {
		t.Errorf("exit %d stdout %q timed out %v: Run waited for the daemons", out.ExitCode, out.stdout, out.TimedOut)
	}
	runsNormally(t, l)
}

// TestOutputCap: output beyond the limit is dropped (the command is not
// blocked) and the result says so.
func TestOutputCap(t *testing.T) {
	l := newTestLauncher(t, Options{})
	out := runSpec(t, l, testSpec("/bin/probe", "write", "1048576"), Request{OutputLimit: 1000})
	if out.ExitCode != 0 {
		t.Errorf("exit %d", out.ExitCode)
	}
	if !out.Stdout.Truncated || out.Stdout.Bytes != 1000 || out.Stdout.Discarded != 1048576-1000 || len(out.stdout) != 1000 {
		t.Errorf("stdout stats %+v, file %d bytes", out.Stdout, len(out.stdout))
	}
	if out.Stderr.Truncated {
		t.Errorf("stderr stats %+v", out.Stderr)
	}
}

// TestInputRootContract: the layout the runner builds works. Inputs are
// hard links to files of the worker's cache, owned by host root and
// read-only; the input root's directories are owned by the host uid that
// container root maps to. The action can write outputs (owned on the host
// by the mapped uid) and may unlink an input, but can neither write nor
// chmod one, so the shared cache file is never changed.
func TestInputRootContract(t *testing.T) {
	l := newTestLauncher(t, Options{})
	spec := testSpec("/bin/sh", "-c", `echo out > /work/out.txt || exit 10
echo x >> /work/in.txt && exit 11
chmod 666 /work/in.txt && exit 12
rm -f /work/in.txt && echo replaced > /work/in.txt || exit 13
exit 0`)
	hostUID, err := HostID(spec.Linux.UIDMappings, 0)
	if err != nil {
		t.Fatal(err)
	}
	hostGID, _ := HostID(spec.Linux.GIDMappings, 0)
	cache, input := t.TempDir(), t.TempDir()
	cached := filepath.Join(cache, "blob")
	if err := os.WriteFile(cached, []byte("input\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(cached, filepath.Join(input, "in.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(input, int(hostUID), int(hostGID)); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(input, 0o755); err != nil {
		t.Fatal(err)
	}
	spec.Mounts = append(spec.Mounts, specs.Mount{Destination: "/work", Type: "bind", Source: input, Options: []string{"rbind", "rw"}})
	out := runSpec(t, l, spec, Request{})
	if out.ExitCode != 0 {
		t.Fatalf("exit %d (10: cannot write output, 11: input writable, 12: input chmod-able, 13: cannot replace input); stderr %q", out.ExitCode, out.stderr)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(input, "out.txt"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != hostUID {
		t.Errorf("output owned by host uid %d, want %d", st.Uid, hostUID)
	}
	if err := syscall.Stat(cached, &st); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(cached); string(b) != "input\n" || st.Mode&0o777 != 0o444 || st.Uid != 0 {
		t.Errorf("cache file changed: %q mode %o uid %d", b, st.Mode&0o777, st.Uid)
	}
}

// TestStaleCgroupsRemoved: New removes sandbox cgroups whose spawner is
// gone (a crashed runner), killing what is left in them.
func TestStaleCgroupsRemoved(t *testing.T) {
	requireRoot(t)
	parent := "paddock-sandbox-stale-test"
	var dirs []string
	for _, sub := range v1Subsystems {
		d := filepath.Join(cgroupRoot, sub, parent, "999999999-7")
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Skipf("cannot create v1 cgroup (%v); not a v1/hybrid host", err)
		}
		dirs = append(dirs, d)
	}
	l := newTestLauncher(t, Options{CgroupParent: parent})
	for _, d := range dirs {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("stale cgroup %s still there", d)
			os.Remove(d)
		}
	}
	if err := l.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	for _, sub := range v1Subsystems {
		if _, err := os.Stat(filepath.Join(cgroupRoot, sub, parent)); err == nil {
			t.Errorf("empty parent cgroup %s/%s left after Close", sub, parent)
		}
	}
}

// TestCloseEndsRunningSandboxes: closing the launcher terminates sandboxes
// still running; their Run returns, and nothing is left.
func TestCloseEndsRunningSandboxes(t *testing.T) {
	l := newTestLauncher(t, Options{KillGrace: 300 * time.Millisecond})
	bundle := writeBundle(t, testSpec("/bin/sleep", "1000"))
	type result struct {
		res *Result
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := l.Run(context.Background(), Request{Bundle: bundle})
		done <- result{res, err}
	}()
	// Wait until the command runs.
	deadline := time.Now().Add(10 * time.Second)
	for len(sandboxProcessesNow(t)) < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := l.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	select {
	case r := <-done:
		if r.err == nil && !r.res.Canceled {
			t.Errorf("Run after Close: %+v, want canceled or an error", r.res)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after Close")
	}
	if ps := sandboxProcesses(t); len(ps) != 0 {
		t.Errorf("sandbox processes left after Close: %q", ps)
	}
	if n := warmInits(t); n != 0 {
		t.Errorf("%d warm inits left after Close", n)
	}
}

// TestSpawnerCrashRecovered: if the spawner dies (here SIGKILLed while a
// sandbox runs), that Run fails, its sandbox dies with it, and the next Run
// starts a new spawner and works.
func TestSpawnerCrashRecovered(t *testing.T) {
	l := newTestLauncher(t, Options{})
	bundle := writeBundle(t, testSpec("/bin/sleep", "1000"))
	done := make(chan error, 1)
	go func() {
		_, err := l.Run(context.Background(), Request{Bundle: bundle})
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for len(sandboxProcessesNow(t)) < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	old := l.b.(*nativeBackend).spawnerPid()
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Error("Run whose spawner was killed returned no error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its spawner died")
	}
	runsNormally(t, l)
	if now := l.b.(*nativeBackend).spawnerPid(); now == old {
		t.Errorf("spawner not replaced")
	}
	// The dead spawner's cgroups were removed when the new one started.
	for _, sub := range v1Subsystems {
		ents, _ := os.ReadDir(filepath.Join(cgroupRoot, sub, testCgroupParent))
		for _, e := range ents {
			if e.IsDir() && strings.HasPrefix(e.Name(), fmt.Sprint(old)+"-") {
				t.Errorf("stale cgroup %s/%s of the dead spawner", sub, e.Name())
			}
		}
	}
}
