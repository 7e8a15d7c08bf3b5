package storage

import (
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/internal/grpcerr"
)

// unsentAsNotFound is the error of a read (ByteStream Read, a
// BatchReadBlobs entry) that failed before any byte of its blob reached
// the client: DATA_LOSS, a blob found corrupt, is answered NOT_FOUND, as
// the store that found it has removed it (the disk and S3 stores do, and
// a Paddock storage behind a remote front) and it is no longer in the CAS;
// a remote CAS of another kind may keep its copy, and its clients then
// fail on a later read instead. Clients recover from NOT_FOUND: Bazel 4.2.3
// takes it for an evicted output and runs the action again, or uploads
// the blob; on DATA_LOSS it failed the build, when a rebuild would have
// mended it. Once bytes have gone out, DATA_LOSS stays: the client holds
// part of a blob it must drop. Other errors are returned as they are.
//
// The message is the store's own, which names the blob and says what was
// wrong, without the context wrapped around it on the way ("read blob
// X: "): a batch entry's status has room for 120 bytes.
func unsentAsNotFound(err error) error {
	if status.Code(err) != codes.DataLoss {
		return err
	}
	// The code was found in err's chain, so a status is there to take.
	var inner interface{ GRPCStatus() *status.Status }
	errors.As(err, &inner)
	return status.Error(codes.NotFound, grpcerr.Convert(inner.GRPCStatus().Err()).Message())
}
