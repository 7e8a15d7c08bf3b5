package worker

import (
	"context"
	"log/slog"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/storage"
)

// cacheStep runs the steps inside and writes the result to the action
// cache when it may serve later requests: the action ran to completion
// with exit code 0, neither it nor the assignment is do_not_cache, and no
// step marked it uncacheable (truncated output, a timeout, an OOM kill or
// a pids-limit hit). A failure to write is logged; the result stands.
//
// Nor is it written when the scheduler session that assigned the action
// has ended meanwhile (sessionEnded, workerclient.SessionEnded): the
// scheduler may have given the action to another worker (this one was
// stopped past its lease, say), whose result the client already has; a
// late write here replaced that entry with another run's, and for an
// action whose outputs differ from run to run the client and later cache
// hits disagreed. The result still goes to the scheduler, which takes it
// if the action is still this worker's.
type cacheStep struct {
	next         Executor
	ac           storage.ActionCache
	logger       *slog.Logger
	sessionEnded func(context.Context) bool
}

func (s *cacheStep) Execute(ctx context.Context, j *Job) (*repb.ExecuteResponse, error) {
	resp, err := s.next.Execute(ctx, j)
	if err != nil || !cacheable(j, resp) {
		return resp, err
	}
	if s.sessionEnded(ctx) {
		s.logger.Info("not writing the action cache: the scheduler session that assigned the action ended; the scheduler decides whether to take the result",
			"action", j.ActionDigest.String())
		return resp, nil
	}
	// The metadata's completion stamps are not set yet: the cached copy
	// carries what is known now, as the client's copy does.
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
