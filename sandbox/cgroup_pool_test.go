package sandbox

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestCgroupReuse: with no warm init and one sandbox at a time, every
// sandbox runs in the same pooled cgroup, and each starts with its own
// spec's limits and figures only: an OOM kill and a fork bomb in one
// leave no trace in the next.
func TestCgroupReuse(t *testing.T) {
	l := newTestLauncher(t, Options{WarmInits: -1})

	hog := testSpec("/bin/probe", "hog", "256")
	memLimit := int64(64 << 20)
	hog.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &memLimit}
	if out := runSpec(t, l, hog, Request{Timeout: 30 * time.Second}); !out.OOMKilled {
		t.Fatalf("hog not OOM-killed: %+v", out.Result)
	}

	bomb := testSpec("/bin/sh", "-c", "f() { f | f & }; f; setsid sleep 1000 & sleep 1")
	pidsLimit := int64(16)
	bomb.Linux.Resources.Pids.Limit = &pidsLimit
	if out := runSpec(t, l, bomb, Request{Timeout: 5 * time.Second}); out.Cgroup.PidsLimitHits == 0 {
		t.Fatalf("fork bomb never hit the pids limit: %+v", out.Cgroup)
	}

	// More memory than the hog's limit and more processes than the bomb's,
	// under a pids limit that leftovers of the bomb (16 processes) would
	// exhaust: 40 sleeps, the shell, and the init's few threads.
	script := `/bin/probe hog 128 && i=0 && while [ $i -lt 40 ]; do sleep 1 & i=$((i+1)); done; wait; echo done`
	next := testSpec("/bin/sh", "-c", script)
	roomy := int64(56)
	next.Linux.Resources.Pids.Limit = &roomy
	out := runSpec(t, l, next, Request{Timeout: 30 * time.Second})
	if out.ExitCode != 0 || strings.TrimSpace(out.stdout) != "128\ndone" {
		t.Errorf("next sandbox: exit %d signal %v stdout %q stderr %q", out.ExitCode, out.Signal, out.stdout, out.stderr)
	}
	if out.OOMKilled || out.Cgroup.OOMKills != 0 || out.Cgroup.PidsLimitHits != 0 {
		t.Errorf("next sandbox inherited figures: %+v", out.Cgroup)
	}
	if out.Cgroup.MemoryPeakBytes < 128<<20 || out.Cgroup.CPUTime <= 0 {
		t.Errorf("next sandbox's own figures missing: %+v", out.Cgroup)
	}
	ents, err := os.ReadDir(filepath.Join(cgroupRoot, "memory", testCgroupParent))
	if err != nil {
		t.Fatal(err)
	}
	var groups []string
	for _, e := range ents {
		if e.IsDir() {
			groups = append(groups, e.Name())
		}
	}
	if len(groups) != 1 {
		t.Errorf("sandbox cgroups %v, want the one reused", groups)
	}
	runsNormally(t, l)
}

// TestCgroupPoolRefusesBusyCgroup: a cgroup that still holds a process is
// never handed out again; it is removed instead.
func TestCgroupPoolRefusesBusyCgroup(t *testing.T) {
	requireRoot(t)
	pool, parent, cg := pooledCgroup(t, "-pool")
	cmd := startSleep(t, cg)
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if cg.reset() {
		t.Fatal("reset accepted a cgroup with a process in it")
	}
	pool.put(parent, cg, false) // kills the process and removes the cgroup
	if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("process in the returned cgroup: %v, want killed", err)
	}
	again, err := pool.get(parent)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.put(parent, again, false)
	if again == cg {
		t.Error("the busy cgroup was handed out again")
	}
	if p := cg.(*cgroupV1).path("pids", ""); exists(p) {
		t.Errorf("busy cgroup %s not removed", p)
	}
}

// TestCgroupWithChargesIsNotReused: a cgroup whose last sandbox left
// more than maxReusedCharge of page cache charged to it is removed, not
// reused: its next sandbox, perhaps another tenant's, reported the first
// one's gigabytes as its own peak and paid for their reclaim under its
// own limit.
func TestCgroupWithChargesIsNotReused(t *testing.T) {
	requireRoot(t)
	pool, parent, cg := pooledCgroup(t, "-charged")
	file := filepath.Join(t.TempDir(), "written")
	cmd := startIn(t, cg, func() *exec.Cmd {
		return exec.Command("dd", "if=/dev/zero", "of="+file, "bs=1M", "count=64")
	})
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if used := parseUint(cg.(*cgroupV1).read("memory", "memory.usage_in_bytes")); used <= maxReusedCharge {
		t.Skipf("64 MiB written left %d bytes charged (the filesystem's pages are not charged here)", used)
	}
	if cg.reset() {
		t.Fatal("reset accepted a cgroup with 64 MiB still charged to it")
	}
	pool.put(parent, cg, false) // removes it
	if p := cg.(*cgroupV1).path("memory", ""); exists(p) {
		t.Errorf("charged cgroup %s not removed", p)
	}
}

// pooledCgroup is a cgroup from a fresh pool under testCgroupParent and
// suffix; when the test ends the pool is closed and the parent removed.
func pooledCgroup(t *testing.T, suffix string) (pool *cgroupPool, parent string, cg sandboxCgroup) {
	t.Helper()
	parent = testCgroupParent + suffix
	t.Cleanup(func() { removeCgroupParent(parent) })
	pool = newCgroupPool(new(atomic.Uint64))
	t.Cleanup(pool.close)
	cg, err := pool.get(parent)
	if err != nil {
		t.Fatal(err)
	}
	return pool, parent, cg
}

// startSleep starts a long sleep in cg.
func startSleep(t *testing.T, cg sandboxCgroup) *exec.Cmd {
	t.Helper()
	return startIn(t, cg, func() *exec.Cmd { return exec.Command("sleep", "1000") })
}

// startIn starts the command newCmd makes so that it is born in cg, as
// the spawner starts an init (a second one if the first start fails).
func startIn(t *testing.T, cg sandboxCgroup, newCmd func() *exec.Cmd) *exec.Cmd {
	t.Helper()
	var cmd *exec.Cmd
	_, err := cg.start(func(cgroupFD int) (int, error) {
		cmd = newCmd()
		if cgroupFD >= 0 {
			cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgroupFD}
		}
		if err := cmd.Start(); err != nil {
			return 0, err
		}
		return cmd.Process.Pid, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return cmd
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return !errors.Is(err, fs.ErrNotExist)
}
