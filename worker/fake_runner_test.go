package worker_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"google.golang.org/grpc"

	"github.com/paddock-build/paddock/api/runnerpb"
)

// execRunner is a runnerpb.RunnerClient that runs the command as a plain
// host process (no sandbox): enough to test the worker's side of the
// protocol — input roots, outputs, results — without root. The real runner
// is tested in package runner and end to end.
type execRunner struct {
	calls int
	// before, if set, runs in the input root before the command (to plant
	// files the way a hostile action would).
	before func(inputRoot string)
	err    error
}

func (r *execRunner) Run(ctx context.Context, req *runnerpb.RunRequest, _ ...grpc.CallOption) (*runnerpb.RunResponse, error) {
	r.calls++
	if r.err != nil {
		return nil, r.err
	}
	if r.before != nil {
		r.before(req.InputRoot)
	}
	cmd := exec.CommandContext(ctx, req.Arguments[0], req.Arguments[1:]...)
	cmd.Dir = filepath.Join(req.InputRoot, req.WorkingDirectory)
	cmd.Env = []string{}
	for _, e := range req.EnvironmentVariables {
		cmd.Env = append(cmd.Env, e.Name+"="+e.Value)
	}
	stdout, _ := os.Create(req.StdoutPath)
	stderr, _ := os.Create(req.StderrPath)
	defer stdout.Close()
	defer stderr.Close()
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err := cmd.Run()
	resp := &runnerpb.RunResponse{}
	if ee, ok := err.(*exec.ExitError); ok {
		ws := ee.Sys().(syscall.WaitStatus)
		resp.ExitCode = int32(ws.ExitStatus())
	} else if err != nil {
		return nil, err
	}
	return resp, nil
}

func (r *execRunner) CheckReadiness(ctx context.Context, req *runnerpb.CheckReadinessRequest, _ ...grpc.CallOption) (*runnerpb.CheckReadinessResponse, error) {
	return &runnerpb.CheckReadinessResponse{Version: "exec"}, nil
}
