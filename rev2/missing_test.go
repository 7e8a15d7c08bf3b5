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
	subjects, onlyMissing := MissingSubjects(st)
	if !onlyMissing || len(subjects) != 10 {
		t.Fatalf("details = %v, want 10 MISSING violations", st.Details())
	}
	for i, s := range subjects {
		if s != "blobs/"+blobs[i].Digest.String() {
			t.Errorf("violation %d subject %q", i, s)
		}
	}
	if !strings.Contains(st.Message(), "input file f0: blob") || !strings.Contains(st.Message(), "and 7 more") {
		t.Errorf("message = %q, want the first blobs named and the rest counted", st.Message())
	}
}

// MissingSubjects tells a status holding a violation of another type from
// one holding MISSING violations alone.
func TestMissingSubjectsSeesOtherViolations(t *testing.T) {
	st, err := status.New(codes.FailedPrecondition, "x").WithDetails(&errdetails.PreconditionFailure{Violations: []*errdetails.PreconditionFailure_Violation{
		{Type: "MISSING", Subject: "blobs/a/1"}, {Type: "OUT_OF_DATE", Subject: "blobs/b/2"}}})
	if err != nil {
		t.Fatal(err)
	}
	subjects, onlyMissing := MissingSubjects(st)
	if onlyMissing || len(subjects) != 1 || subjects[0] != "blobs/a/1" {
		t.Errorf("MissingSubjects = %v, %v; want [blobs/a/1], false", subjects, onlyMissing)
	}
	if subjects, onlyMissing := MissingSubjects(status.New(codes.NotFound, "y")); subjects != nil || !onlyMissing {
		t.Errorf("without details: %v, %v; want none, true", subjects, onlyMissing)
	}
}

// A read that found a blob absent or corrupt is MISSING, naming it; any
// other failure of the read is passed on as it is.
func TestMissingIfGone(t *testing.T) {
	d := digest.FromBytes(repb.DigestFunction_SHA256, []byte("blob"))
	blob := MissingBlob{Digest: d, What: "action_digest"}
	for _, code := range []codes.Code{codes.NotFound, codes.DataLoss} {
		st := status.Convert(MissingIfGone(status.Error(code, "read failed"), blob))
		if subjects, _ := MissingSubjects(st); st.Code() != codes.FailedPrecondition || len(subjects) != 1 || subjects[0] != "blobs/"+d.String() {
			t.Errorf("%v: %v %q %v; want FAILED_PRECONDITION with %s MISSING", code, st.Code(), st.Message(), subjects, d)
		}
	}
	for _, code := range []codes.Code{codes.Unavailable, codes.InvalidArgument, codes.ResourceExhausted, codes.Internal} {
		err := status.Error(code, "read failed")
		if got := MissingIfGone(err, blob); got != err {
			t.Errorf("%v: %v; want the error unchanged", code, got)
		}
	}
	if MissingIfGone(nil, blob) != nil || Gone(nil) {
		t.Error("no error is not gone")
	}
}
