package storage_test

import (
	"context"
	"fmt"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// TestBatchUpdateReplyFitsTheClient: a BatchUpdateBlobs of so many tiny
// blobs that its reply (a digest and a status each) would be over the 4
// MiB gRPC clients receive by default is refused with INVALID_ARGUMENT
// before anything is stored; a batch whose reply fits is stored and its
// reply received. Before, 60,000 blobs of 10 bytes were stored and the
// client got RESOURCE_EXHAUSTED for the reply.
func TestBatchUpdateReplyFitsTheClient(t *testing.T) {
	ts := startServer(t, storage.ServerOptions{MaxBatchTotalSizeBytes: 4 << 20})
	ctx := context.Background()
	batch := func(tag string, n int) (*repb.BatchUpdateBlobsRequest, []digest.Digest) {
		req := &repb.BatchUpdateBlobsRequest{}
		var ds []digest.Digest
		for i := range n {
			data := []byte(fmt.Sprintf("%s%08d", tag, i))
			d := digest.FromBytes(repb.DigestFunction_SHA256, data)
			req.Requests = append(req.Requests, &repb.BatchUpdateBlobsRequest_Request{Digest: d.Proto(), Data: data})
			ds = append(ds, d)
		}
		return req, ds
	}
	req, ds := batch("a", 60_000)
	_, err := ts.cas.BatchUpdateBlobs(ctx, req)
	wantStatus(t, err, codes.InvalidArgument, "send fewer blobs per batch")
	if m := missing(t, ts.disk, ds[0], ds[len(ds)-1]); len(m) != 2 {
		t.Fatalf("a refused batch stored blobs: %d of 2 checked are missing", len(m))
	}
	req, ds = batch("b", 40_000)
	resp, err := ts.cas.BatchUpdateBlobs(ctx, req)
	if err != nil || len(resp.Responses) != len(ds) {
		t.Fatalf("a batch of 40,000 tiny blobs: %v", err)
	}
	if m := missing(t, ts.disk, ds[0], ds[len(ds)-1]); len(m) != 0 {
		t.Fatal("a batch whose reply fits was not stored")
	}
}
