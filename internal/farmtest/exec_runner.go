// Package farmtest starts a whole Paddock farm in-process for tests of the
// packages that talk to one (the load generator, the worker): real storage,
// scheduler and worker on a loopback gRPC endpoint, with ExecRunner in place
// of the sandboxing runner so that the tests need neither root nor a kernel
// with user namespaces. The real runner is tested in package runner and end
// to end in package e2e. It also holds what such tests share around a farm:
// an auth policy from its text (Policy) and an action stored through a
// farm's CAS (UploadAction).
package farmtest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"

	"google.golang.org/grpc/codes"

	"github.com/paddock-build/paddock/api/runnerpb"
)

// ExecRunner is a runnerpb.RunnerClient that runs each command as a plain
// host process in the input root, with exactly the Command's environment.
// It does not sandbox anything: it is for tests only.
type ExecRunner struct {
	// Before, if set, runs in the input root before the command, e.g. to
	// plant files the way a hostile action would.
	Before func(inputRoot string)
	// Err, if set, is returned instead of running (a runner that died).
	Err error
	// Truncated, if set, reports stdout as cut at the output cap.
	Truncated bool
	// After, if set, edits each response, e.g. to report an OOM kill the
	// way the sandbox does.
	After func(*runnerpb.RunResponse)
	calls atomic.Int64
	last  atomic.Pointer[runnerpb.RunRequest]
}

// Calls is how many times Run was called.
func (r *ExecRunner) Calls() int { return int(r.calls.Load()) }

// LastRequest is the request Run was last called with (nil before any).
func (r *ExecRunner) LastRequest() *runnerpb.RunRequest { return r.last.Load() }

// Run implements worker.Runner.
func (r *ExecRunner) Run(ctx context.Context, req *runnerpb.RunRequest) (*runnerpb.RunResponse, error) {
	r.calls.Add(1)
	r.last.Store(req)
	if r.Err != nil {
		return nil, r.Err
	}
	if r.Before != nil {
		r.Before(req.InputRoot)
	}
	cmd := exec.CommandContext(ctx, req.Arguments[0], req.Arguments[1:]...)
	cmd.Dir = filepath.Join(req.InputRoot, req.WorkingDirectory)
	cmd.Env = []string{}
	for _, e := range req.EnvironmentVariables {
		cmd.Env = append(cmd.Env, e.Name+"="+e.Value)
	}
	stdout, err := os.Create(req.StdoutPath)
	if err != nil {
		return nil, err
	}
	defer stdout.Close()
	stderr, err := os.Create(req.StderrPath)
	if err != nil {
		return nil, err
	}
	defer stderr.Close()
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err = cmd.Run()
	resp := &runnerpb.RunResponse{StdoutTruncated: r.Truncated}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		resp.StatusCode, resp.Cancelled = int32(codes.Canceled), true
	case errors.As(err, &ee):
		resp.ExitCode = int32(ee.Sys().(syscall.WaitStatus).ExitStatus())
	case err != nil:
		resp.ExitCode = 127                    // could not start: as a shell would report it
		_, _ = stderr.WriteString(err.Error()) // the exit code already says it could not start
	}
	if r.After != nil {
		r.After(resp)
	}
	return resp, nil
}
