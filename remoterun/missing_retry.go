package remoterun

import (
	"context"
	"fmt"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/client"
	"github.com/paddock-build/paddock/rev2"
)

// maxMissingRetries bounds how often a run uploads again after the farm
// answered that blobs it had just been sent are missing: a farm that keeps
// losing them (a CAS far too small for the action) ends the run with that
// answer instead of looping.
const maxMissingRetries = 2

// executeUploadingMissing executes p's action, and when the farm answers
// FAILED_PRECONDITION with MISSING violations that name blobs of p (the
// CAS evicted one between the upload and the execution, or found its
// stored copy corrupt and dropped it), uploads what is missing again and
// executes again, as the REv2 spec asks of a client and as Bazel does.
// What the uploads moved is added to res.Uploaded's Missing counts.
func executeUploadingMissing(ctx context.Context, c *client.Client, p *prepared, req *repb.ExecuteRequest, res *Result) (*repb.ExecuteResponse, error) {
	for retries := 0; ; retries++ {
		resp, err := c.Execute(ctx, req)
		if retries == maxMissingRetries || !missingOurs(p, err, resp) {
			return resp, err
		}
		up, err := c.Upload(ctx, p.blobs)
		// The same blobs were asked for: only what moved adds up.
		res.Uploaded.MissingBlobs += up.MissingBlobs
		res.Uploaded.MissingBytes += up.MissingBytes
		if err != nil {
			return nil, fmt.Errorf("upload again, after the farm found blobs missing: %w", err)
		}
	}
}

// missingOurs reports whether the execution failed only for blobs missing
// from the CAS (in the Execute call's error, or in the response's status)
// and at least one of them is one of p's, which an upload can mend.
func missingOurs(p *prepared, err error, resp *repb.ExecuteResponse) bool {
	st := status.Convert(err)
	if err == nil {
		st = status.FromProto(resp.GetStatus())
	}
	if st.Code() != codes.FailedPrecondition {
		return false
	}
	subjects, onlyMissing := rev2.MissingSubjects(st)
	if !onlyMissing {
		return false
	}
	for _, s := range subjects {
		for _, b := range p.blobs {
			if s == "blobs/"+b.Digest.String() {
				return true
			}
		}
	}
	return false
}
