package worker

import (
	"context"
	"fmt"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/internal/clock"
	"github.com/paddock-build/paddock/internal/grpcerr"
	"github.com/paddock-build/paddock/rev2"
	"github.com/paddock-build/paddock/storage"
)

// uploadStep runs the steps inside, then collects the action's outputs,
// stdout and stderr from the build directory and uploads them into the
// result (outputCollector).
type uploadStep struct {
	next     Executor
	cas      storage.BlobStore
	adoption *outputAdoption // nil: every output is copied
	limits   OutputLimits
	clock    clock.Clock
	// checkOver is the output bytes from which the uploaded result is
	// checked against the CAS (checkUploadsOver); 0: never.
	checkOver int64
}

func (s *uploadStep) Execute(ctx context.Context, j *Job) (*repb.ExecuteResponse, error) {
	resp, err := s.next.Execute(ctx, j)
	if err != nil || resp.Result == nil {
		return resp, err
	}
	j.Metadata.OutputUploadStartTimestamp = stamp(s.clock)
	oc := &outputCollector{cas: s.cas, fn: j.Fn, rootFd: j.RootFd, limits: s.limits, sizeLimit: j.FileSizeLimit}
	if j.Ran { // the sandbox has ended: nothing of the action's is left to write an output
		oc.adoption = s.adoption
	}
	if err := oc.collect(ctx, j.Command, resp.Result); err != nil {
		if !leftByTheAction(err) {
			return nil, err
		}
		// The action left outputs that cannot be reported (a FIFO, an
		// absolute symlink, a name that is not UTF-8, past a limit…):
		// the execution fails with that status, and still reports its
		// exit code, stdout and stderr, as the spec lets a failed
		// execution do. A non-OK status is never cached.
		dropOutputs(resp.Result)
		resp.Status = grpcerr.Convert(err).Proto()
	}
	if oc.atSizeLimit != "" {
		// A child of the command killed by SIGXFSZ leaves the file cut
		// at the limit and the command free to exit 0: the result
		// would be cached as if the file were whole.
		j.Uncacheable = "an output at the file size limit"
		resp.Message = joinNotes(resp.Message, fmt.Sprintf("output %s reached the file size limit of %d bytes (the runner's disk_quota): a process writing it may have been stopped there (SIGXFSZ), so the result was not cached", rev2.Quote(oc.atSizeLimit), j.FileSizeLimit))
	}
	var streamBytes int64
	for _, out := range []struct {
		file   string
		digest **repb.Digest
	}{{j.Request.StdoutPath, &resp.Result.StdoutDigest}, {j.Request.StderrPath, &resp.Result.StderrDigest}} {
		d, err := oc.uploadStream(ctx, out.file)
		if err != nil {
			return nil, fmt.Errorf("upload stdout/stderr: %w", err)
		}
		*out.digest = d.Proto()
		streamBytes += d.SizeBytes()
	}
	if err := oc.flush(ctx); err != nil {
		return nil, err
	}
	if s.checkOver > 0 && oc.bytes+streamBytes >= s.checkOver {
		err := storage.CheckComplete(ctx, s.cas, j.Fn, resp.Result)
		switch status.Code(err) {
		case codes.OK:
		case codes.NotFound:
			dropOutputs(resp.Result)
			resp.Result.StdoutDigest, resp.Result.StderrDigest = nil, nil
			resp.Status = status.Newf(codes.ResourceExhausted, "the action's outputs (%d bytes) were evicted from the CAS while they were uploaded: it holds less than they need at once (%s)", oc.bytes+streamBytes, grpcerr.Convert(err).Message()).Proto()
		case codes.InvalidArgument: // a result the action cache would refuse
			dropOutputs(resp.Result)
			resp.Status = grpcerr.Convert(err).Proto()
		default:
			return nil, fmt.Errorf("check the uploaded outputs: %w", err)
		}
	}
	j.Metadata.OutputUploadCompletedTimestamp = stamp(s.clock)
	return resp, nil
}

// checkUploadsOver is the output bytes over which a result is checked
// against the CAS once uploaded: a CAS smaller than an action's outputs
// together evicts the first while it stores the last, and the client was
// handed an OK result it could not fetch (Bazel: "Missing digest"). Below
// 1 MiB the check would cost a call per action for what a CAS of any
// sensible size never does; below a quarter of a CAS whose size the
// worker knows (casBytes, 0: unknown), too, so that a CAS under a few
// megabytes is checked as well.
func checkUploadsOver(casBytes int64) int64 {
	if casBytes > 0 {
		return max(1, min(1<<20, casBytes/4))
	}
	return 1 << 20
}

// joinNotes adds note to a response message of notes.
func joinNotes(msg, note string) string {
	if msg == "" {
		return note
	}
	return msg + "; " + note
}

// leftByTheAction tells the output errors that the action caused
// (FAILED_PRECONDITION, INVALID_ARGUMENT from outputCollector) from the
// worker's own (the CAS failing, a cancellation).
func leftByTheAction(err error) bool {
	c := status.Code(err)
	return c == codes.FailedPrecondition || c == codes.InvalidArgument
}

// dropOutputs clears what collect had added to r before it failed.
func dropOutputs(r *repb.ActionResult) {
	r.OutputFiles, r.OutputDirectories = nil, nil
	r.OutputSymlinks, r.OutputFileSymlinks, r.OutputDirectorySymlinks = nil, nil, nil
}
