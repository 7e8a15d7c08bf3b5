package storage

import (
	"bytes"
	"fmt"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/digest"
)

// The batches splitBatches makes fit their limit as whole messages, the
// request and the reply to it as a server that counts its gRPC message
// sees them, for blobs of every size around the limit; every blob is in
// one batch or alone, and alone only if it fits no batch.
func TestSplitBatchesFitWholeMessages(t *testing.T) {
	for _, limit := range []int64{0, 300, 4 << 10, 256 << 10} {
		for _, instance := range []string{"", "tenant-a/some/longer/instance/name"} {
			t.Run(fmt.Sprintf("%d/%q", limit, instance), func(t *testing.T) {
				var ds []digest.Digest
				blobs := map[digest.Digest][]byte{}
				for i, n := range []int64{1, 100, limit / 3, limit / 2, limit - 200, limit - 100, limit - 1, limit, limit + 1, 7} {
					data := bytes.Repeat([]byte{byte(i)}, int(max(n, 1)))
					d := digest.FromBytes(repb.DigestFunction_SHA512, data)
					ds, blobs[d] = append(ds, d), data
				}
				batches, alone := splitBatches(ds, instance, limit)
				seen := len(alone)
				for _, batch := range batches {
					seen += len(batch)
					checkBatch(t, batch, blobs, instance, limit)
				}
				for _, d := range alone {
					checkAlone(t, d, blobs[d], instance, limit)
				}
				if seen != len(ds) {
					t.Fatalf("%d blobs in batches or alone, want %d", seen, len(ds))
				}
			})
		}
	}
}

func checkBatch(t *testing.T, batch []digest.Digest, blobs map[digest.Digest][]byte, instance string, limit int64) {
	t.Helper()
	req := &repb.BatchUpdateBlobsRequest{InstanceName: instance, DigestFunction: repb.DigestFunction_SHA512}
	reply := &repb.BatchReadBlobsResponse{}
	for _, d := range batch {
		req.Requests = append(req.Requests, &repb.BatchUpdateBlobsRequest_Request{Digest: d.Proto(), Data: blobs[d], Compressor: repb.Compressor_ZSTD})
		reply.Responses = append(reply.Responses, &repb.BatchReadBlobsResponse_Response{Digest: d.Proto(), Data: blobs[d], Status: &rpcstatus.Status{}, Compressor: repb.Compressor_ZSTD})
	}
	if n := proto.Size(req); int64(n) > limit {
		t.Errorf("a BatchUpdateBlobs of %d blobs is %d bytes, over the limit %d", len(batch), n, limit)
	}
	if n := proto.Size(reply); int64(n) > limit {
		t.Errorf("a BatchReadBlobs reply of %d blobs is %d bytes, over the limit %d", len(batch), n, limit)
	}
}

func checkAlone(t *testing.T, d digest.Digest, data []byte, instance string, limit int64) {
	t.Helper()
	req := &repb.BatchUpdateBlobsRequest{InstanceName: instance, DigestFunction: repb.DigestFunction_SHA512,
		Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: d.Proto(), Data: data}}}
	if fitsBatch(d, instance, limit) {
		t.Errorf("blob %s fits a batch of %d but was left alone", d, limit)
	}
	// The slack may leave out a blob that would just fit, never one far
	// below the limit.
	if n := int64(proto.Size(req)); n+2*remoteEntrySlack <= limit {
		t.Errorf("blob %s left alone, but its batch of %d bytes fits %d", d, n, limit)
	}
}
