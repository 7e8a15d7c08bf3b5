package runner

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/paddock-build/paddock/api/runnerpb"
	"github.com/paddock-build/paddock/sandbox"
)

// Hostile actions against the runner's limits (issue 13): each must be
// contained by a limit, reported truthfully, and leave the runner able to
// run the next action.

const mib = 1 << 20

// checkNextActionRuns runs a plain action after a hostile one, and checks
// that nothing of the hostile one is left on the host.
func checkNextActionRuns(t *testing.T, e *testEnv) {
	t.Helper()
	waitFor(t, "the sandbox's processes to be gone", func() bool { return len(slotProcesses(t)) == 0 })
	a := e.newAction(t)
	resp := e.run(t, a.request("/bin/sh", "-c", "echo next"))
	mustSucceed(t, a, resp)
	if out, _ := a.output(t); out != "next\n" || resp.StatusMessage != "" || resp.OomKilled || resp.PidsLimitHit {
		t.Errorf("next action: stdout %q, message %q, oom %v, pids %v", out, resp.StatusMessage, resp.OomKilled, resp.PidsLimitHit)
	}
}

// checkStoppedEarly checks that a killed action had made fewer than all
// of the entries (named what) it set out to make in its root, and that
// the runner then runs the next action.
func checkStoppedEarly(t *testing.T, e *testEnv, a *action, what string, all int) {
	t.Helper()
	entries, err := os.ReadDir(a.root)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the action had made %d %s when it was killed", len(entries), what)
	if len(entries) >= all {
		t.Errorf("the action made all of its %d %s", len(entries), what)
	}
	checkNextActionRuns(t, e)
}

// describe shows a response in failure messages.
func describe(resp *runnerpb.RunResponse) string {
	return fmt.Sprintf("%s %q exit %d signal %d", codes.Code(resp.StatusCode), resp.StatusMessage, resp.ExitCode, resp.Signal)
}

// TestMemoryHogUnderDefaultLimit: an action without EstimatedMemory gets
// default_memory_limit; one allocating past it is OOM-killed, and the
// response says so in its flag and its message, with the limit.
func TestMemoryHogUnderDefaultLimit(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.DefaultMemoryLimit = 64 * mib })
	a := e.newAction(t)
	// dd's 512 MiB buffer is filled by the read from /dev/zero.
	resp := e.run(t, a.request("/bin/dd", "if=/dev/zero", "of=/dev/null", "bs=512M", "count=1"))
	if !resp.OomKilled || resp.ExitCode == 0 || !strings.Contains(resp.StatusMessage, "OOM killer") || !strings.Contains(resp.StatusMessage, "64 MiB") {
		t.Errorf("%s, oom_killed %v; want the OOM kill reported with the 64 MiB limit", describe(resp), resp.OomKilled)
	}
	if peak := resp.Usage.GetPeakMemoryBytes(); peak > 64*mib+mib {
		t.Errorf("peak memory %d above the 64 MiB default limit", peak)
	}
	checkNextActionRuns(t, e)
}

// fillScript writes MiB by MiB into path until a write fails or count MiB
// are written, then prints how many MiB it wrote.
func fillScript(path string, count int) string {
	return fmt.Sprintf("n=0; while [ $n -lt %d ] && /bin/dd if=/dev/zero of=%s bs=1M count=1 seek=$n conv=notrunc status=none; do n=$((n+1)); done; echo $n", count, path)
}

// fillTmpfs writes up to 1 GiB into a file in dir (a tmpfs of the
// sandbox) in an action of a runner whose default memory limit is
// memLimit, and checks that the action succeeded having written 64 MiB
// before the write failed with ENOSPC.
func fillTmpfs(t *testing.T, dir string, memLimit int64) (*testEnv, *runnerpb.RunResponse) {
	t.Helper()
	e := newTestEnv(t, func(c *Config) { c.DefaultMemoryLimit = memLimit })
	a := e.newAction(t)
	resp := e.run(t, a.request("/bin/sh", "-c", fillScript(dir+"/fill", 1024)))
	mustSucceed(t, a, resp)
	out, stderr := a.output(t)
	if strings.TrimSpace(out) != "64" || !strings.Contains(stderr, "No space left") {
		t.Errorf("wrote %q MiB to %s (stderr %q), want 64 and ENOSPC", out, dir, stderr)
	}
	return e, resp
}

// TestTmpFill: /tmp is a tmpfs bounded by tmp_size (half the memory limit
// by default): filling it fails with ENOSPC there, its pages are charged
// to the sandbox's memory cgroup (not to the host), and the action is
// reported as it ended, without an OOM kill.
func TestTmpFill(t *testing.T) {
	// 64 MiB: half the 128 MiB limit.
	e, resp := fillTmpfs(t, "/tmp", 128*mib)
	// The tmpfs pages were charged to the sandbox: its peak covers them.
	if peak := resp.Usage.GetPeakMemoryBytes(); peak < 64*mib || peak > 128*mib+mib {
		t.Errorf("peak memory %d, want the 64 MiB of /tmp charged to the sandbox, within its 128 MiB", peak)
	}
	if resp.OomKilled {
		t.Errorf("a full /tmp OOM-killed the action: %s", describe(resp))
	}
	checkNextActionRuns(t, e)
}

// TestShmFill: /dev/shm is bounded by dockerShmSize (64 MiB by default),
// its pages count against the memory limit, and a dockerShmSize above the
// action's memory limit is refused.
func TestShmFill(t *testing.T) {
	e, resp := fillTmpfs(t, "/dev/shm", 256*mib)
	if peak := resp.Usage.GetPeakMemoryBytes(); peak < 64*mib {
		t.Errorf("peak memory %d, want the 64 MiB of /dev/shm charged to the sandbox", peak)
	}

	b := e.newAction(t)
	req := b.request("/bin/sh", "-c", "echo ran > ran")
	req.Platform = []*runnerpb.Property{{Name: "dockerShmSize", Value: "1TiB"}}
	resp = e.run(t, req)
	if codes.Code(resp.StatusCode) != codes.InvalidArgument || !strings.Contains(resp.StatusMessage, "dockerShmSize") {
		t.Errorf("dockerShmSize=1TiB: %s, want INVALID_ARGUMENT naming dockerShmSize", describe(resp))
	}
	checkNextActionRuns(t, e)
}

// TestPartialOOM: a child OOM-killed while the command itself exits 0 is
// reported: OK (the command ran, exit 0), oom_killed, and a message.
func TestPartialOOM(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.DefaultMemoryLimit = 64 * mib })
	a := e.newAction(t)
	resp := e.run(t, a.request("/bin/sh", "-c", "/bin/dd if=/dev/zero of=/dev/null bs=512M count=1; exit 0"))
	if codes.Code(resp.StatusCode) != codes.OK || resp.ExitCode != 0 || !resp.OomKilled ||
		!strings.Contains(resp.StatusMessage, "OOM killer killed 1 process") {
		t.Errorf("%s, oom_killed %v; want OK, exit 0, the child's OOM kill flagged and described", describe(resp), resp.OomKilled)
	}
	checkNextActionRuns(t, e)
}

// TestWholeSandboxOOM: memory held by a tmpfs larger than the limit, which
// no kill frees, ends in OOM kills: of the cats filling it, and of the
// shell too (and the sandbox's init) if it then needs a page, which the
// kernel decides. Either way the response is never OK with exit code -1
// and nothing more: it is oom_killed with a message naming the OOM killer
// and the limit, and the shell's kill by SIGKILL or, when the OOM killer
// spared it, its own exit 0 (as in TestPartialOOM; a run in CI saw
// that). (The message when the init went too is pinned by
// TestResponseOOMEndedTheSandbox.)
func TestWholeSandboxOOM(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.DefaultMemoryLimit = 32 * mib; c.TmpSize = 1 << 30 })
	a := e.newAction(t)
	resp := e.run(t, a.request("/bin/sh", "-c", "/bin/cat /dev/zero > /tmp/fill; /bin/cat /dev/zero > /tmp/fill2; exit 0"))
	killed := resp.Signal == int32(syscall.SIGKILL)
	spared := resp.Signal == 0 && resp.ExitCode == 0
	if codes.Code(resp.StatusCode) != codes.OK || !killed && !spared || !resp.OomKilled ||
		!strings.Contains(resp.StatusMessage, "OOM killer") || !strings.Contains(resp.StatusMessage, "32 MiB") {
		t.Errorf("%s, oom_killed %v; want SIGKILL or exit 0, oom_killed, a message naming the OOM killer and the 32 MiB limit", describe(resp), resp.OomKilled)
	}
	checkNextActionRuns(t, e)
}

// TestResponseOOMEndedTheSandbox: an init that died with the OOM killer at
// work (every process of the sandbox killed) is reported as the command's
// kill by SIGKILL, oom_killed, with a message naming the limit and saying
// the command's own status is unknown; an init that died otherwise is
// INTERNAL.
func TestResponseOOMEndedTheSandbox(t *testing.T) {
	facts := runFacts{limits: sandboxLimits{Memory: 32 * mib}}
	res := &sandbox.Result{InitDied: true, OOMKilled: true, ExitCode: -1, Signal: syscall.SIGKILL}
	res.Cgroup.OOMKills = 2
	resp := response(res, facts, time.Now(), time.Now())
	if codes.Code(resp.StatusCode) != codes.OK || resp.Signal != int32(syscall.SIGKILL) || !resp.OomKilled ||
		!strings.Contains(resp.StatusMessage, "ended the whole sandbox") || !strings.Contains(resp.StatusMessage, "32 MiB") ||
		!strings.Contains(resp.StatusMessage, "exit status is unknown") {
		t.Errorf("%s, oom_killed %v; want OK, SIGKILL, oom_killed, a message naming the whole sandbox and the 32 MiB limit", describe(resp), resp.OomKilled)
	}
	res.OOMKilled = false
	if resp := response(res, facts, time.Now(), time.Now()); codes.Code(resp.StatusCode) != codes.Internal {
		t.Errorf("init killed without an OOM kill: %s, want INTERNAL", describe(resp))
	}
}

// TestForkBombKillPath: a fork bomb whose processes ignore SIGTERM, with a
// short timeout, is ended by the kill path after the grace period (the
// sandbox frozen, every process killed): DEADLINE_EXCEEDED, timed_out,
// SIGKILL, the pids limit hit reported, nothing left.
func TestForkBombKillPath(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.PidsLimit = 64 })
	a := e.newAction(t)
	// bash retries a failed fork and carries on; the ignored SIGTERM is
	// inherited by every process of the bomb.
	req := a.request("/bin/bash", "-c", `trap "" TERM; f() { while :; do f & done; }; f`)
	req.Timeout = durationpb.New(time.Second)
	resp := e.run(t, req)
	if codes.Code(resp.StatusCode) != codes.DeadlineExceeded || !resp.TimedOut || resp.Signal != 9 || !resp.PidsLimitHit ||
		!strings.Contains(resp.StatusMessage, "limit of 64 processes") {
		t.Errorf("%s, timed_out %v, pids_limit_hit %v; want DEADLINE_EXCEEDED by SIGKILL with the pids limit reported",
			describe(resp), resp.TimedOut, resp.PidsLimitHit)
	}
	if peak := resp.Usage.GetPeakPids(); peak > 64 {
		t.Errorf("peak pids %d above the limit of 64", peak)
	}
	checkNextActionRuns(t, e)
}

// TestWorkDiskFill: the input root (/work) is bounded by disk_quota. One
// file cannot grow past it (RLIMIT_FSIZE: the kernel refuses, SIGXFSZ);
// many files that together pass it get the sandbox killed by the disk
// guard, answered RESOURCE_EXHAUSTED naming the quota. Either way the
// host disk keeps nearly all of what the action tried to take.
func TestWorkDiskFill(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.DiskQuota = 64 * mib })
	t.Run("one file", func(t *testing.T) {
		a := e.newAction(t)
		resp := e.run(t, a.request("/bin/dd", "if=/dev/zero", "of=big", "bs=1M", "count=1024"))
		st, err := os.Stat(filepath.Join(a.root, "big"))
		if err != nil || st.Size() != 64*mib {
			t.Errorf("big: %v, %v; want exactly the 64 MiB quota", st, err)
		}
		if codes.Code(resp.StatusCode) != codes.OK || resp.Signal != int32(syscall.SIGXFSZ) || !strings.Contains(resp.StatusMessage, "disk quota of 64 MiB") {
			t.Errorf("%s; want OK, killed by SIGXFSZ, the quota named", describe(resp))
		}
		// For the worker, which cannot cache an output of that size
		// when a child of the command was the one stopped.
		if resp.FileSizeLimitBytes != 64*mib {
			t.Errorf("file_size_limit_bytes %d, want the 64 MiB quota", resp.FileSizeLimitBytes)
		}
		checkNextActionRuns(t, e)
	})
	t.Run("many files", func(t *testing.T) {
		a := e.newAction(t)
		// 4 GiB in 1 MiB files, unless stopped.
		script := "i=0; while [ $i -lt 4096 ]; do /bin/dd if=/dev/zero of=f$i bs=1M count=1 status=none || exit 1; i=$((i+1)); done"
		resp := e.run(t, a.request("/bin/sh", "-c", script))
		if codes.Code(resp.StatusCode) != codes.ResourceExhausted || !strings.Contains(resp.StatusMessage, "disk quota of 64 MiB") {
			t.Errorf("%s; want RESOURCE_EXHAUSTED naming the 64 MiB quota", describe(resp))
		}
		// The guard checks every 100ms: the overshoot is what the action
		// writes meanwhile, far below the 4 GiB it set out to write.
		written := diskUsage(t, a.root)
		t.Logf("the action's files took %d MiB when it was killed", written/mib)
		if written < 64*mib || written > 1<<30 {
			t.Errorf("the action's files take %d bytes, want past the 64 MiB quota but far below 4 GiB", written)
		}
		checkNextActionRuns(t, e)
	})
}

// TestWorkInodeFill: files that take no bytes, and directories, count too.
// Millions of empty files or directories would use up the inodes of the
// worker's filesystem; past disk_quota_files the disk guard kills the
// sandbox, answered RESOURCE_EXHAUSTED naming the quota, long before the
// action has made what it set out to.
func TestWorkInodeFill(t *testing.T) {
	for _, tc := range []struct {
		name, script, want string
		files              int64
	}{
		{"empty files", pacedFill("touch", 300000), "more than 10000 files, directories and links", 10_000},
		{"directories", pacedFill("mkdir", 300000), "more than 10000 files, directories and links", 10_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// 2 GiB: all 300,000 directories would take 1.2 GB, so
			// however late the guard's walk comes (under load, after
			// 43,000 of them), the count is what stops them.
			e := newTestEnv(t, func(c *Config) { c.DiskQuota, c.DiskQuotaFiles = 2048*mib, tc.files })
			a := e.newAction(t)
			resp := e.run(t, a.request("/bin/sh", "-c", tc.script))
			if codes.Code(resp.StatusCode) != codes.ResourceExhausted || !strings.Contains(resp.StatusMessage, tc.want) {
				t.Errorf("%s; want RESOURCE_EXHAUSTED saying %q", describe(resp), tc.want)
			}
			checkStoppedEarly(t, e, a, "entries", 300000)
		})
	}
}

// TestWorkDiskFillWhileSpaceIsFreed: the disk guard's statfs shortcut
// cannot be fooled by others freeing space on the same filesystem while
// the action writes (here a 4 GiB file deleted as the action starts, which
// hides its first 4 GiB from statfs): its periodic walk still finds the
// action past its quota.
func TestWorkDiskFillWhileSpaceIsFreed(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.DiskQuota = 64 * mib })
	other := filepath.Join(e.build, "someone-elses")
	f, err := os.Create(other)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, 4<<30); err != nil {
		f.Close()
		t.Skipf("cannot allocate 4 GiB to free during the test: %v", err)
	}
	f.Close()
	a := e.newAction(t)
	freed := make(chan error, 1)
	go func() {
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) {
			if _, err := os.Stat(filepath.Join(a.root, "f0")); err == nil {
				freed <- os.Remove(other)
				return
			}
			time.Sleep(time.Millisecond) // poll for the action's first file
		}
		freed <- errors.New("the action never wrote its first file")
	}()
	script := "i=0; while [ $i -lt 4096 ]; do /bin/dd if=/dev/zero of=f$i bs=1M count=1 status=none || exit 1; i=$((i+1)); done"
	resp := e.run(t, a.request("/bin/sh", "-c", script))
	if err := <-freed; err != nil {
		t.Fatal(err)
	}
	if codes.Code(resp.StatusCode) != codes.ResourceExhausted || !strings.Contains(resp.StatusMessage, "disk quota of 64 MiB") {
		t.Errorf("%s; want RESOURCE_EXHAUSTED naming the 64 MiB quota", describe(resp))
	}
	written := diskUsage(t, a.root)
	t.Logf("the action's files took %d MiB when it was killed", written/mib)
	if written >= 4<<30 {
		t.Errorf("the action wrote all of its %d bytes", written)
	}
	checkNextActionRuns(t, e)
}

// diskUsage sums the disk blocks of the regular files under root.
func diskUsage(t *testing.T, root string) int64 {
	t.Helper()
	var total int64
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return err
		}
		total += st.Blocks * 512
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return total
}
