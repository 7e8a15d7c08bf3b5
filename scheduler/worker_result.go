package scheduler

import (
	"fmt"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// checkWorkerResult holds a worker's result for e to the rules the action
// cache holds results to (storage.ValidateActionResult: clean relative
// paths, relative symlink targets, well-formed digests of the action's
// digest function; storage.CheckOutputsInside: no output leaves the input
// root from the Command's working directory, when it is known), since
// clients get the result as it is: one with an output path outside the
// input root crashed Bazel 4.2.3. It returns nil for a
// result that passes, or the response that replaces one that does not:
// UNAVAILABLE with no result, which the core retries elsewhere, away from
// this worker, as it does when a worker loses its runner. Whether the
// blobs named are stored is not checked here (it would cost a storage
// call per result); the worker uploads them before it reports.
// maxDeliveredResponseBytes bounds a worker's ExecuteResponse: the
// Operation that carries it to clients adds its name and metadata, and
// gRPC clients receive at most 4 MiB by default (Bazel's included). A
// real worker's response is far smaller: it sends stdout and stderr by
// digest.
const maxDeliveredResponseBytes = 4<<20 - 64<<10

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
