package worker

import (
	"context"
	"errors"
	"fmt"
	"os"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/internal/clock"
	"github.com/paddock-build/paddock/storage"
)

// uploadStep runs the steps inside, then collects the action's outputs,
// stdout and stderr from the build directory and uploads them into the
// result (outputCollector).
type uploadStep struct {
	next   Executor
	cas    storage.BlobStore
	limits OutputLimits
	clock  clock.Clock
}

func (s *uploadStep) Execute(ctx context.Context, j *Job) (*repb.ExecuteResponse, error) {
	resp, err := s.next.Execute(ctx, j)
	if err != nil || resp.Result == nil {
		return resp, err
	}
	j.Metadata.OutputUploadStartTimestamp = stamp(s.clock)
	oc := &outputCollector{cas: s.cas, fn: j.Fn, rootFd: j.RootFd, limits: s.limits}
	if err := oc.collect(ctx, j.Command, resp.Result); err != nil {
		return nil, err
	}
	for _, out := range []struct {
		file   string
		digest **repb.Digest
	}{{j.Request.StdoutPath, &resp.Result.StdoutDigest}, {j.Request.StderrPath, &resp.Result.StderrDigest}} {
		b, err := os.ReadFile(out.file)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, status.Errorf(codes.Internal, "read output stream: %v", err)
		}
		d, err := oc.uploadBytes(ctx, b)
		if err != nil {
			return nil, fmt.Errorf("upload stdout/stderr: %w", err)
		}
		*out.digest = d.Proto()
	}
	if err := oc.flush(ctx); err != nil {
		return nil, err
	}
	j.Metadata.OutputUploadCompletedTimestamp = stamp(s.clock)
	return resp, nil
}
