package storage

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
)

// CheckOffset returns the OUT_OF_RANGE error with which BlobStore.Get
// refuses a read offset outside d (0 ≤ offset ≤ size), or nil. It is
// written once so that a client resuming a read gets the same answer from
// every backend, whichever one holds the blob.
func CheckOffset(d digest.Digest, offset int64) error {
	if offset < 0 || offset > d.SizeBytes() {
		return status.Errorf(codes.OutOfRange, "offset %d is outside blob %s", offset, d)
	}
	return nil
}
