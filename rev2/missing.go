package rev2

import (
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
)

// MissingBlob is a blob a request needs that the CAS does not hold, with
// what referred to it ("action_digest", "input file a/b.c"; may be empty).
type MissingBlob struct {
	Digest digest.Digest
	What   string
}

// maxMissingInMessage bounds how many blobs the status message names; the
// PreconditionFailure details list them all.
const maxMissingInMessage = 3

// Missing is the FAILED_PRECONDITION the spec prescribes for blobs missing
// from the CAS: one MISSING violation per distinct blob, with subject
// "blobs/{hash}/{size}", which clients such as Bazel act on by uploading
// them and trying again.
func Missing(blobs ...MissingBlob) error {
	pf := &errdetails.PreconditionFailure{}
	seen := map[digest.Digest]bool{}
	msg := ""
	for _, b := range blobs {
		if seen[b.Digest] {
			continue
		}
		seen[b.Digest] = true
		desc := "not in the CAS"
		if b.What != "" {
			desc = b.What + " is not in the CAS"
		}
		pf.Violations = append(pf.Violations, &errdetails.PreconditionFailure_Violation{
			Type: "MISSING", Subject: "blobs/" + b.Digest.String(), Description: desc})
		if len(pf.Violations) <= maxMissingInMessage {
			part := fmt.Sprintf("blob %s is missing", b.Digest)
			if b.What != "" {
				part = b.What + ": " + part
			}
			if msg != "" {
				msg += "; "
			}
			msg += part
		}
	}
	if n := len(pf.Violations); n > maxMissingInMessage {
		msg += fmt.Sprintf("; and %d more", n-maxMissingInMessage)
	}
	st := status.New(codes.FailedPrecondition, msg)
	if withDetails, err := st.WithDetails(pf); err == nil {
		st = withDetails
	}
	return st.Err()
}

// Gone reports whether err, from reading a blob out of a CAS, means that
// the client has to upload the blob again: NOT_FOUND (never stored, or
// evicted since it was found), or DATA_LOSS (found corrupt at rest; a
// Paddock store removes it then, and no store's copy is of use). Either
// way the blob is not present in the CAS for this request, and the
// spec's answer is MISSING in a FAILED_PRECONDITION, on which clients
// upload it and retry; they do not retry DATA_LOSS, and a build failed
// on one damaged file.
func Gone(err error) bool {
	switch status.Code(err) {
	case codes.NotFound, codes.DataLoss:
		return true
	}
	return false
}

// MissingIfGone is Missing(blob) when err is Gone, else err.
func MissingIfGone(err error, blob MissingBlob) error {
	if Gone(err) {
		return Missing(blob)
	}
	return err
}

// MissingDigests is Missing for blobs without a description.
func MissingDigests(ds []digest.Digest) error {
	blobs := make([]MissingBlob, len(ds))
	for i, d := range ds {
		blobs[i] = MissingBlob{Digest: d}
	}
	return Missing(blobs...)
}

// MissingSubjects reads Missing's answer back, as a client does before it
// uploads what is missing and tries again: the subjects of the MISSING
// violations in st's PreconditionFailure details, in order. onlyMissing
// is false when st holds a violation of another type, which re-uploading
// cannot mend.
func MissingSubjects(st *status.Status) (subjects []string, onlyMissing bool) {
	onlyMissing = true
	for _, d := range st.Details() {
		pf, ok := d.(*errdetails.PreconditionFailure)
		if !ok {
			continue
		}
		for _, v := range pf.GetViolations() {
			if v.GetType() != "MISSING" {
				onlyMissing = false
				continue
			}
			subjects = append(subjects, v.GetSubject())
		}
	}
	return subjects, onlyMissing
}
