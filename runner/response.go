package runner

import (
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/paddock-build/paddock/api/runnerpb"
	"github.com/paddock-build/paddock/sandbox"
)

// runFacts are what the report of a run needs besides its result: the
// limits it ran under.
type runFacts struct {
	timeout        time.Duration
	limits         sandboxLimits
	pids           int64    // pids_limit; 0 = none
	diskQuota      int64    // disk_quota; 0 = none
	diskQuotaFiles int64    // disk_quota_files; 0 = none
	overQuota      quotaHit // the diskGuard killed the sandbox, past this quota
}

// response translates a sandbox result. It is pure. The status says
// whether the command's outcome is known:
//
//   - RESOURCE_EXHAUSTED: the sandbox's files took more than the disk
//     quota, or were more than its count, and it was killed;
//   - CANCELLED, DEADLINE_EXCEEDED: the sandbox was terminated;
//   - INTERNAL: the sandbox's init died before it reported, not by the
//     OOM killer;
//   - OK: the command ran and exit_code/signal are its own, or the OOM
//     killer ended the whole sandbox (its init included): then signal is
//     SIGKILL, oom_killed is set and status_message says so.
//
// An OOM kill or a pids-limit hit anywhere in the sandbox (oom_killed,
// pids_limit_hit) is also described in status_message, even with OK: a
// child the kernel killed, or a fork that failed, may have changed what
// the command produced although it exited 0, so the worker must report it
// and must not cache the result.
func response(res *sandbox.Result, f runFacts, start, end time.Time) *runnerpb.RunResponse {
	resp := &runnerpb.RunResponse{
		ExitCode:           int32(res.ExitCode),
		Signal:             int32(res.Signal),
		TimedOut:           res.TimedOut,
		OomKilled:          res.OOMKilled,
		PidsLimitHit:       res.Cgroup.PidsLimitHits > 0,
		Cancelled:          res.Canceled,
		StdoutTruncated:    res.Stdout.Truncated,
		StderrTruncated:    res.Stderr.Truncated,
		ExecutionStart:     timestamppb.New(start),
		ExecutionCompleted: timestamppb.New(end),
		Usage:              usage(res),
		FileSizeLimitBytes: f.diskQuota,
	}
	var notes []string
	switch {
	case f.overQuota == quotaBytes:
		resp.StatusCode = int32(codes.ResourceExhausted)
		notes = append(notes, fmt.Sprintf("the action's files in its input root took more than its disk quota of %s (the runner's disk_quota) and the sandbox was killed", formatBytes(f.diskQuota)))
	case f.overQuota == quotaFiles:
		resp.StatusCode = int32(codes.ResourceExhausted)
		notes = append(notes, fmt.Sprintf("the action made more than %d files, directories and links in its input root (the runner's disk_quota_files) and the sandbox was killed", f.diskQuotaFiles))
	case f.overQuota == quotaUncountable:
		resp.StatusCode = int32(codes.ResourceExhausted)
		notes = append(notes, fmt.Sprintf("the action made a tree in its input root that the runner's disk guard cannot count (nested deeper than %d directories, or changing under its walk), or its processes held more than %d descriptors and file mappings, so its disk quota could not be enforced and the sandbox was killed", maxWalkDepth, maxHeldEntries))
	case f.overQuota == quotaInFlight:
		resp.StatusCode = int32(codes.ResourceExhausted)
		notes = append(notes, fmt.Sprintf("the action held file descriptors in flight in UNIX sockets (sent and not received), whose files the runner's disk guard cannot count, while the worker's filesystem grew by more than its disk quota of %s, so the sandbox was killed", formatBytes(f.diskQuota)))
	case res.Canceled:
		resp.StatusCode = int32(codes.Canceled)
		notes = append(notes, "cancelled: the sandbox was terminated")
	case res.TimedOut:
		resp.StatusCode = int32(codes.DeadlineExceeded)
		notes = append(notes, fmt.Sprintf("the action timed out after %s and was terminated", f.timeout))
	case res.InitDied && res.OOMKilled:
		// Every process of the sandbox was killed by SIGKILL: reported as
		// such (OK, signal 9, oom_killed) so that the worker answers the
		// client as for any OOM-killed command, but never silently.
		notes = append(notes, fmt.Sprintf("the action ran out of memory (its limit is %s, set by EstimatedMemory or the runner's default_memory_limit; /tmp and /dev/shm count against it): the kernel's OOM killer ended the whole sandbox, so every process of it was killed and the command's own exit status is unknown", limitText(f.limits.Memory)))
	case res.InitDied:
		resp.StatusCode = int32(codes.Internal)
		notes = append(notes, fmt.Sprintf("the sandbox's init was killed (%s) before it reported: the command's exit status is unknown", res.Signal))
	}
	if res.OOMKilled && !res.InitDied {
		notes = append(notes, fmt.Sprintf("the kernel's OOM killer killed %d process(es) of the action (memory limit %s; /tmp and /dev/shm count against it)", res.Cgroup.OOMKills, limitText(f.limits.Memory)))
	}
	if isFileSizeSignal(res.Signal) {
		notes = append(notes, fmt.Sprintf("the command was killed for growing a file past the disk quota of %s (SIGXFSZ)", limitText(f.diskQuota)))
	}
	if hits := res.Cgroup.PidsLimitHits; hits > 0 {
		notes = append(notes, fmt.Sprintf("the action reached its limit of %d processes and threads: %d fork(s) failed", f.pids, hits))
	}
	resp.StatusMessage = strings.Join(notes, "; ")
	return resp
}

// limitText describes a memory limit.
func limitText(n int64) string {
	if n <= 0 {
		return "none"
	}
	return formatBytes(n)
}

// usage converts the sandbox's measurements.
func usage(res *sandbox.Result) *runnerpb.ResourceUsage {
	return &runnerpb.ResourceUsage{
		UserTime:                   durationpb.New(res.Usage.UserTime),
		SystemTime:                 durationpb.New(res.Usage.SystemTime),
		MaxRssBytes:                res.Usage.MaxRSSBytes,
		MinorPageFaults:            res.Usage.MinorFaults,
		MajorPageFaults:            res.Usage.MajorFaults,
		VoluntaryContextSwitches:   res.Usage.VoluntaryCtxSwitches,
		InvoluntaryContextSwitches: res.Usage.InvoluntaryCtxSwitch,
		PeakMemoryBytes:            int64(res.Cgroup.MemoryPeakBytes),
		CgroupCpuTime:              durationpb.New(res.Cgroup.CPUTime),
		PeakPids:                   int64(res.Cgroup.PidsPeak),
		WallTime:                   durationpb.New(res.WallTime),
	}
}
