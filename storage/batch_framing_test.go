package storage_test

import (
	"context"
	"fmt"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/klauspost/compress/zstd"
	"google.golang.org/grpc/codes"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// TestBatchOfSmallBlobsWithinTheAdvertisedBound: a batch whose blob bytes
// are within max_batch_total_size_bytes is taken though its digests and
// framing add nearly as much again (30,000 blobs of 100 bytes: 3 MB of
// blobs, 5.3 MB on the wire). Before, gRPC refused it with
// RESOURCE_EXHAUSTED before the handler saw it. (At a bound of 4 MiB;
// the default is 2.)
func TestBatchOfSmallBlobsWithinTheAdvertisedBound(t *testing.T) {
	ts := startServer(t, storage.ServerOptions{MaxBatchTotalSizeBytes: 4 << 20})
	req := &repb.BatchUpdateBlobsRequest{}
	read := &repb.BatchReadBlobsRequest{}
	for i := range 30_000 {
		data := fmt.Appendf(nil, "%0100d", i)
		d := digest.FromBytes(repb.DigestFunction_SHA256, data)
		req.Requests = append(req.Requests, &repb.BatchUpdateBlobsRequest_Request{Digest: d.Proto(), Data: data})
		read.Digests = append(read.Digests, d.Proto())
	}
	resp, err := ts.cas.BatchUpdateBlobs(context.Background(), req)
	if err != nil {
		t.Fatalf("a batch of 30,000 blobs of 100 bytes: %v", err)
	}
	for i, r := range resp.Responses {
		if r.Status.GetCode() != 0 {
			t.Fatalf("responses[%d]: %v", i, r.Status)
		}
	}
	got, err := ts.cas.BatchReadBlobs(context.Background(), read)
	if err != nil {
		t.Fatalf("reading them back in one batch: %v", err)
	}
	if len(got.Responses) != 30_000 || string(got.Responses[29_999].Data) != fmt.Sprintf("%0100d", 29_999) {
		t.Fatalf("read back %d blobs", len(got.Responses))
	}
}

// TestCompressedBatchCountsBlobsAtTheirSize: a compressed batch entry
// counts against max_batch_total_size_bytes at its digest's size, the
// bytes it decodes to, not its bytes on the wire. Before, 141 bytes of
// zstd decoding to 2 MiB each passed as 141, and one small request of
// such entries cost minutes of CPU and gigabytes to decode.
func TestCompressedBatchCountsBlobsAtTheirSize(t *testing.T) {
	ts := startServer(t, storage.ServerOptions{})
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	zeros := make([]byte, 1<<20)
	d := digest.FromBytes(repb.DigestFunction_SHA256, zeros)
	packed := enc.EncodeAll(zeros, nil)
	req := &repb.BatchUpdateBlobsRequest{}
	for range 3 { // 3 MiB of blobs in a few hundred bytes
		req.Requests = append(req.Requests, &repb.BatchUpdateBlobsRequest_Request{Digest: d.Proto(), Data: packed, Compressor: repb.Compressor_ZSTD})
	}
	_, err = ts.cas.BatchUpdateBlobs(context.Background(), req)
	wantStatus(t, err, codes.InvalidArgument, "max_batch_total_size_bytes", "requests[2]")
	req.Requests = req.Requests[:2] // 2 MiB: within the bound
	if _, err := ts.cas.BatchUpdateBlobs(context.Background(), req); err != nil {
		t.Fatalf("a compressed batch within the bound: %v", err)
	}
}
