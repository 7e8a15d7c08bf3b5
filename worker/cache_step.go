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
type cacheStep struct {
	next   Executor
	ac     storage.ActionCache
	logger *slog.Logger
}

func (s *cacheStep) Execute(ctx context.Context, j *Job) (*repb.ExecuteResponse, error) {
	resp, err := s.next.Execute(ctx, j)
	if err != nil || !cacheable(j, resp) {
		return resp, err
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
