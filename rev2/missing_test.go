package rev2

import (
	"fmt"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
)

func TestMissing(t *testing.T) {
	var blobs []MissingBlob
	for i := range 10 {
		blobs = append(blobs, MissingBlob{Digest: digest.FromBytes(repb.DigestFunction_SHA256, []byte(fmt.Sprint(i))), What: fmt.Sprintf("input file f%d", i)})
	}
	blobs = append(blobs, blobs[0]) // a duplicate is listed once
	st := status.Convert(Missing(blobs...))
	if st.Code() != codes.FailedPrecondition {
		t.Fatalf("code = %v, want FAILED_PRECONDITION", st.Code())
	}
	var pf *errdetails.PreconditionFailure
	for _, d := range st.Details() {
		if p, ok := d.(*errdetails.PreconditionFailure); ok {
			pf = p
		}
	}
	if pf == nil || len(pf.Violations) != 10 {
		t.Fatalf("details = %v, want 10 violations", st.Details())
	}
	for i, v := range pf.Violations {
		if v.Type != "MISSING" || v.Subject != "blobs/"+blobs[i].Digest.String() {
			t.Errorf("violation %d = %v", i, v)
		}
	}
	if !strings.Contains(st.Message(), "input file f0: blob") || !strings.Contains(st.Message(), "and 7 more") {
		t.Errorf("message = %q, want the first blobs named and the rest counted", st.Message())
	}
}
