package scheduler

import (
	"errors"
	"fmt"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// maxDeliveredResponseBytes bounds a worker's ExecuteResponse: the
// Operation that carries it to clients adds its name and metadata, and
// gRPC clients receive at most 4 MiB by default (Bazel's included). A
// real worker's response is far smaller: it sends stdout and stderr by
// digest.
const maxDeliveredResponseBytes = 4<<20 - 64<<10

// checkWorkerResult holds a worker's result for e to the rules the action
// cache holds results to (storage.ValidateActionResult: clean relative
// paths, relative symlink targets, well-formed digests of the action's
// digest function; storage.CheckOutputsInside: no output leaves the input
// root from the Command's working directory, when it is known), since
// clients get the result as it is: one with an output path outside the
// input root crashed Bazel 4.2.3. The response itself must be one a
// worker sends (checkResponseShape). It returns nil for a result that
// passes, or the response that replaces one that does not:
// UNAVAILABLE with no result, which the core retries elsewhere, away from
// this worker, as it does when a worker loses its runner. Whether the
// blobs named are stored is not checked here (it would cost a storage
// call per result); the worker uploads them before it reports.
func checkWorkerResult(worker string, e *execution, resp *repb.ExecuteResponse) *repb.ExecuteResponse {
	fn := e.key.action.Function()
	var err error
	if r := resp.GetResult(); r != nil {
		err = storage.ValidateActionResult(fn, r)
		if err == nil && e.spec.workingDirKnown {
			err = storage.CheckOutputsInside(r, e.spec.workingDir)
		}
	}
	if size := proto.Size(resp); err == nil && size > maxDeliveredResponseBytes {
		err = fmt.Errorf("the response takes %d bytes; with its operation it would pass the 4 MiB clients receive by default", size)
	}
	if err == nil {
		err = checkResponseShape(resp)
	}
	if err == nil {
		for name, l := range resp.GetServerLogs() {
			if _, err = digest.FromProto(fn, l.GetDigest(), fmt.Sprintf("server_logs[%q].digest", name)); err != nil {
				break
			}
		}
	}
	if err == nil {
		return nil
	}
	return &repb.ExecuteResponse{Status: &rpcstatus.Status{Code: int32(code.Code_UNAVAILABLE),
		Message: fmt.Sprintf("worker %q returned a result REv2 does not allow (%v); it is not delivered, and the action is retried on another worker while retries remain", worker, err)}}
}

// checkResponseShape refuses what no worker's response carries: a status
// code gRPC does not define, OK with no result, or a metadata timestamp
// outside what google.protobuf.Timestamp allows. Clients got status 999,
// or OK and nothing, and the scheduler logged stage times of 292 billion
// years.
func checkResponseShape(resp *repb.ExecuteResponse) error {
	if c := resp.GetStatus().GetCode(); c < 0 || c > int32(code.Code_UNAUTHENTICATED) {
		return fmt.Errorf("status.code %d is not a gRPC code", c)
	}
	if resp.GetStatus().GetCode() == int32(code.Code_OK) && resp.Result == nil {
		return errors.New("status OK with no result")
	}
	m := resp.GetResult().GetExecutionMetadata()
	// An array, not a map: this runs for every result.
	for _, f := range [...]struct {
		name string
		ts   *timestamppb.Timestamp
	}{
		{"queued", m.GetQueuedTimestamp()}, {"worker_start", m.GetWorkerStartTimestamp()}, {"worker_completed", m.GetWorkerCompletedTimestamp()},
		{"input_fetch_start", m.GetInputFetchStartTimestamp()}, {"input_fetch_completed", m.GetInputFetchCompletedTimestamp()},
		{"execution_start", m.GetExecutionStartTimestamp()}, {"execution_completed", m.GetExecutionCompletedTimestamp()},
		{"output_upload_start", m.GetOutputUploadStartTimestamp()}, {"output_upload_completed", m.GetOutputUploadCompletedTimestamp()},
	} {
		if f.ts == nil {
			continue
		}
		if err := f.ts.CheckValid(); err != nil {
			return fmt.Errorf("execution_metadata.%s_timestamp: %w", f.name, err)
		}
	}
	return nil
}
