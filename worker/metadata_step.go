package worker

import (
	"context"
	"log/slog"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/paddock-build/paddock/internal/clock"
	"github.com/paddock-build/paddock/internal/grpcerr"
)

// metadataStep is the outermost step: it stamps the worker's start and
// completion (unless cacheStep stamped it first), turns an error from the
// steps inside into the ExecuteResponse's status (CANCELLED when the
// action was cancelled), and attaches the ExecutedActionMetadata to the
// result.
type metadataStep struct {
	next   Executor
	clock  clock.Clock
	logger *slog.Logger
}

func (s *metadataStep) Execute(ctx context.Context, j *Job) (*repb.ExecuteResponse, error) {
	j.Metadata.WorkerStartTimestamp = timestamppb.New(s.clock.Now())
	resp, err := s.next.Execute(ctx, j)
	if j.Metadata.WorkerCompletedTimestamp == nil { // cacheStep stamps what it caches
		j.Metadata.WorkerCompletedTimestamp = timestamppb.New(s.clock.Now())
	}
	if err != nil {
		st := grpcerr.Convert(err)
		if ctx.Err() != nil {
			// Cancelled: by its client, or by the scheduler (a timeout, the
			// worker stopping). Not a failure of the worker's: a soak's
			// clients hanging up wrote 719 warnings in 35 minutes.
			st = status.New(codes.Canceled, "action cancelled: "+st.Message())
			s.logger.Info("action cancelled", "operation", j.Assignment.OperationName, "error", err)
		} else {
			s.logger.Warn("action failed", "operation", j.Assignment.OperationName, "error", err)
		}
		if resp == nil {
			resp = &repb.ExecuteResponse{}
		}
		resp.Status = st.Proto()
	}
	if resp.Result != nil {
		resp.Result.ExecutionMetadata = j.Metadata
	}
	return resp, nil
}

// stamp is a step's clock reading for a metadata timestamp.
func stamp(c clock.Clock) *timestamppb.Timestamp { return timestamppb.New(c.Now()) }
