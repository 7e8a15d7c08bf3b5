package worker

import (
	"context"
	"log/slog"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/internal/clock"
	"github.com/paddock-build/paddock/storage"
)

// cacheStep runs the steps inside and writes the result to the action
// cache when it may serve later requests: the action ran to completion
// with exit code 0, neither it nor the assignment is do_not_cache, and no
// step marked it uncacheable (truncated output, a timeout, an OOM kill or
// a pids-limit hit). A failure to write is logged; the result stands.
//
// Nor is it written unless the scheduler still assigns the action to this
// worker (stillAssigned, workerclient.StillAssigned): after a reconnect
// that did not keep it, the scheduler may have given the action to
// another worker (this one was stopped past its lease, say), whose result
// the client already has; a late write here replaced that entry with
// another run's, and for an action whose outputs differ from run to run
// the client and later cache hits disagreed. An action the reconnect kept
// (a network blip, a scheduler restarted from its journal) is cached as
// usual: skipping those left every action that crossed a reconnect out
// of the cache, to run again on every clean build. Between sessions the
// check waits for the next one's answer; the result could not be
// delivered before it anyway. The result goes to the scheduler either
// way, which takes it if the action is still this worker's.
type cacheStep struct {
	next          Executor
	ac            storage.ActionCache
	clock         clock.Clock
	logger        *slog.Logger
	stillAssigned func(context.Context) bool
}

func (s *cacheStep) Execute(ctx context.Context, j *Job) (*repb.ExecuteResponse, error) {
	resp, err := s.next.Execute(ctx, j)
	if err != nil {
		return resp, err
	}
	if n := proto.Size(resp); n > workerpb.MaxResultBytes {
		return &repb.ExecuteResponse{Status: status.Newf(codes.ResourceExhausted,
			"the action's result takes %d bytes (its list of outputs), past the %d a result may take (workerpb.MaxResultBytes: what gRPC clients receive by default); the result was not cached",
			n, workerpb.MaxResultBytes).Proto()}, nil
	}
	if !cacheable(j, resp) {
		return resp, nil
	}
	if !s.stillAssigned(ctx) {
		s.logger.Info("not writing the action cache: the scheduler no longer assigns the action to this worker; it decides whether to take the result",
			"action", j.ActionDigest.String())
		return resp, nil
	}
	// Writing the cache is the worker's last stage: the completion is
	// stamped now (metadataStep keeps it), so that cache hits carry
	// worker_completed_timestamp, and the same metadata as the client's
	// copy; before, the stamp came after the write, and hits had none.
	j.Metadata.WorkerCompletedTimestamp = stamp(s.clock)
	resp.Result.ExecutionMetadata = j.Metadata
	if err := s.ac.Put(ctx, j.Assignment.InstanceName, j.ActionDigest, resp.Result); err != nil {
		s.logger.Warn("write action cache", "action", j.ActionDigest.String(), "error", err)
	}
	return resp, nil
}

func cacheable(j *Job, resp *repb.ExecuteResponse) bool {
	return resp.Result != nil && status.FromProto(resp.Status).Code() == codes.OK &&
		resp.Result.ExitCode == 0 && j.Uncacheable == "" &&
		!j.Action.DoNotCache && !j.Assignment.DoNotCache
}
