package worker

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/paddock-build/paddock/api/runnerpb"
	"github.com/paddock-build/paddock/internal/clock"
)

// runStep is the innermost step: it asks the runner to run the command in
// the input root and turns the runner's answer into the response's status
// and exit code. A runner that fails or is gone is UNAVAILABLE, which the
// scheduler retries elsewhere; an action the runner refused (a bad
// platform property, say) keeps the runner's status.
type runStep struct {
	runner   Runner
	clock    clock.Clock
	tenantOf func(instance string) string // nil: no tenants
	disk     *diskWatch                   // the build directories' disk
	room     DiskRoom                     // nil: nothing on it gives room back
	logger   *slog.Logger
}

func (s *runStep) Execute(ctx context.Context, j *Job) (*repb.ExecuteResponse, error) {
	req := runRequest(j)
	// The tenant that queued the action, so that of tenants sharing an
	// instance name each pulls images with its own registry credentials;
	// from a scheduler that does not say, the name's owner.
	req.Tenant = j.Assignment.Tenant
	if req.Tenant == "" && s.tenantOf != nil {
		req.Tenant = s.tenantOf(j.Assignment.InstanceName)
	}
	j.Request = req
	md := j.Metadata
	md.ExecutionStartTimestamp = stamp(s.clock)
	ended := s.disk.begin()
	run, err := s.runner.Run(ctx, req)
	diskWasFull := ended()
	md.ExecutionCompletedTimestamp = stamp(s.clock)
	j.Ran = err == nil
	if err != nil {
		if ctx.Err() != nil {
			return nil, status.Error(codes.Canceled, "action cancelled")
		}
		// The runner itself failed (crashed, restarted): say so in a way
		// clients treat as retryable.
		return nil, status.Errorf(codes.Unavailable, "runner failed, the action may be retried: %v", err)
	}
	j.Run = run
	if run.ExecutionStart != nil {
		md.ExecutionStartTimestamp = run.ExecutionStart
	}
	if run.ExecutionCompleted != nil {
		md.ExecutionCompletedTimestamp = run.ExecutionCompleted
	}
	runStatus := status.New(codes.Code(run.StatusCode), run.StatusMessage)
	switch runStatus.Code() {
	case codes.OK, codes.DeadlineExceeded:
	default:
		return nil, runStatus.Err()
	}
	if mayBeCutByFullDisk(j, run) && diskWasFull {
		// The command may not have written all it meant to: its stdout
		// cut short, or an output file whose writes it did not check (an
		// outside probe got an empty out.txt cached as the result of
		// `echo hello > out.txt 2>/dev/null; exit 0`). The result could
		// be silently wrong: fail it, retryable, and cache nothing. A
		// command that did check fails the same way, rather than with
		// its own exit code, which clients take for their build's fault.
		s.makeRoomForRetry(ctx, j.Dir)
		return nil, status.Error(codes.ResourceExhausted, "the worker's disk was full while the action ran: its output or output files may be cut short, so its result is not used (the action may be retried)")
	}
	if err := markTruncated(j.Dir, run); err != nil {
		return nil, err
	}
	if run.Usage != nil {
		if u, err := anypb.New(run.Usage); err == nil {
			md.AuxiliaryMetadata = append(md.AuxiliaryMetadata, u)
		}
	}
	j.FileSizeLimit = run.FileSizeLimitBytes
	resp := &repb.ExecuteResponse{Result: &repb.ActionResult{ExitCode: exitCode(run)}, Status: runStatus.Proto()}
	reportOutcome(j, run, resp)
	return resp, nil
}

// runRequest is what the runner is asked to run for j.
func runRequest(j *Job) *runnerpb.RunRequest {
	cmd := j.Command
	req := &runnerpb.RunRequest{
		ActionId:         filepath.Base(j.Dir),
		InputRoot:        j.Root,
		ActionDir:        j.Dir,
		Arguments:        cmd.Arguments,
		WorkingDirectory: cmd.WorkingDirectory,
		StdoutPath:       filepath.Join(j.Dir, "stdout"),
		StderrPath:       filepath.Join(j.Dir, "stderr"),
	}
	for _, e := range cmd.EnvironmentVariables {
		req.EnvironmentVariables = append(req.EnvironmentVariables, &runnerpb.EnvironmentVariable{Name: e.Name, Value: e.Value})
	}
	for _, p := range j.Assignment.Platform {
		req.Platform = append(req.Platform, &runnerpb.Property{Name: p.Name, Value: p.Value})
	}
	if j.Assignment.Timeout != nil {
		req.Timeout = j.Assignment.Timeout
	} else if j.Action.Timeout != nil {
		req.Timeout = j.Action.Timeout
	}
	return req
}

// exitCode is the command's exit code as clients expect it: a command
// killed by a signal gets the shell's 128+signal, never -1.
func exitCode(run *runnerpb.RunResponse) int32 {
	if run.ExitCode < 0 && run.Signal > 0 {
		return 128 + run.Signal
	}
	return run.ExitCode
}

// mayBeCutByFullDisk reports whether a full disk could have made run's
// result wrong without a word: its stdout or stderr was cut, it has
// output files or directories (whose writes the command may not have
// checked), or it failed (perhaps of ENOSPC). An action that succeeded
// with nothing but its whole stdout and stderr is right whatever the disk:
// one tenant filling the disk had failed every other's (outside probe).
func mayBeCutByFullDisk(j *Job, run *runnerpb.RunResponse) bool {
	c := j.Command
	return run.StdoutTruncated || run.StderrTruncated || exitCode(run) != 0 ||
		len(c.GetOutputPaths())+len(c.GetOutputFiles())+len(c.GetOutputDirectories()) > 0
}

// truncatedNote ends a stdout or stderr the runner cut short: at its
// output cap, or where a write failed (the runner counts both alike).
const truncatedNote = "\n[paddock: %s cut short here: the command wrote more than the worker's output cap (the runner's sandbox.output_limit), or the worker's disk was full]\n"

// markTruncated appends truncatedNote to the stdout and stderr files in
// dir that the runner cut. The response's message says so too, but
// clients show a message only when an action fails: a test log or a
// compiler's output cut short read as complete.
func markTruncated(dir string, run *runnerpb.RunResponse) error {
	for _, out := range []struct {
		name string
		cut  bool
	}{{"stdout", run.StdoutTruncated}, {"stderr", run.StderrTruncated}} {
		if !out.cut {
			continue
		}
		f, err := os.OpenFile(filepath.Join(dir, out.name), os.O_WRONLY|os.O_APPEND|unix.O_NOFOLLOW, 0)
		if err == nil {
			_, err = fmt.Fprintf(f, truncatedNote, out.name)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			return status.Errorf(codes.Internal, "mark the action's %s as truncated: %v", out.name, err)
		}
	}
	return nil
}

// makeRoomForRetry asks the store that can give room back on the disk
// for room for the retry of the action in dir, which found it full.
func (s *runStep) makeRoomForRetry(ctx context.Context, dir string) {
	if s.room == nil {
		return
	}
	need := roomForRetry(scratchBytes(dir))
	if err := s.room.MakeRoom(ctx, need); err != nil {
		s.logger.Warn("an action found the disk full, and the CAS could not give back room for its retry", "bytes", need, "error", err)
	}
}
