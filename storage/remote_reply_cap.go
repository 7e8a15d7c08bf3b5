package storage

import (
	"math"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
)

// replyFraming is room, per blob, for what a reply's protobuf framing,
// digest and status add to the bytes of the blobs asked for.
const replyFraming = 1 << 10

// replyCap bounds a reply message of the remote to what blobBytes of
// blobs in entries entries take, instead of the connection's 64 MiB: a
// hostile remote answering every BatchReadBlobs of a 1,000-byte blob
// with 60 MiB took a front of 16 such reads from 23 MB to 3 GB, before
// the bytes were refused for their hash. gRPC refuses a message past it
// from its length prefix, before reading it.
func replyCap(blobBytes int64, entries int) grpc.CallOption {
	return grpc.MaxCallRecvMsgSize(int(min(blobBytes+int64(entries+4)*replyFraming, math.MaxInt32)))
}

// batchReplyCap is replyCap for a BatchReadBlobs of ds.
func batchReplyCap(ds []digest.Digest) grpc.CallOption {
	var n int64
	for _, d := range ds {
		n += d.SizeBytes()
	}
	return replyCap(n, len(ds))
}

// overReplyCap turns gRPC's refusal of a reply past replyCap into the
// remote's fault, INTERNAL: as gRPC's RESOURCE_EXHAUSTED, the client took
// it for a bound of its own and retried. Other errors pass unchanged.
func overReplyCap(call string, err error) error {
	if s, ok := status.FromError(err); ok && s.Code() == codes.ResourceExhausted &&
		strings.Contains(s.Message(), "received message larger than max") {
		return status.Errorf(codes.Internal, "remote %s answered more bytes than the blobs asked for take: %s", call, s.Message())
	}
	return err
}
