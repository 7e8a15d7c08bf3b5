package storage_test

import (
	"context"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/storage"
)

// TestBatchReadBlobsMalformedDigestIsAnEntryError: REv2 says every error
// on an individual read is returned in that digest's status. A malformed,
// missing or negative-size digest is INVALID_ARGUMENT in its own entry,
// which echoes the digest as given (an empty one for a missing digest),
// and the other entries are served.
func TestBatchReadBlobsMalformedDigestIsAnEntryError(t *testing.T) {
	ts := startServer(t, storage.ServerOptions{})
	ctx := context.Background()
	good := putString(t, ts.disk, "a stored blob")
	bad := []*repb.Digest{
		{Hash: "abc", SizeBytes: 1},
		nil,
		{Hash: good.Hash(), SizeBytes: -1},
		{Hash: strings.ToUpper(good.Hash()), SizeBytes: good.SizeBytes()},
	}
	req := &repb.BatchReadBlobsRequest{Digests: append([]*repb.Digest{good.Proto()}, bad...)}
	resp, err := ts.cas.BatchReadBlobs(ctx, req)
	if err != nil {
		t.Fatalf("BatchReadBlobs with malformed entries: %v", err)
	}
	if len(resp.Responses) != len(req.Digests) {
		t.Fatalf("%d responses for %d digests", len(resp.Responses), len(req.Digests))
	}
	if r := resp.Responses[0]; codes.Code(r.Status.GetCode()) != codes.OK || string(r.Data) != "a stored blob" {
		t.Fatalf("the good entry: status %v, data %q", r.Status, r.Data)
	}
	for i, d := range bad {
		r := resp.Responses[i+1]
		wantStatus(t, status.ErrorProto(r.Status), codes.InvalidArgument, "digests[")
		want := d
		if want == nil {
			want = &repb.Digest{}
		}
		if r.Digest == nil || !proto.Equal(r.Digest, want) || len(r.Data) != 0 {
			t.Errorf("entry %d: digest %v (want %v as given), %d bytes of data", i+1, r.Digest, want, len(r.Data))
		}
	}
	// Request-level errors stay whole-call errors.
	_, err = ts.cas.BatchReadBlobs(ctx, &repb.BatchReadBlobsRequest{Digests: []*repb.Digest{good.Proto()}, DigestFunction: repb.DigestFunction_MD5})
	wantStatus(t, err, codes.InvalidArgument, "digest_function")
	_, err = ts.cas.BatchReadBlobs(ctx, &repb.BatchReadBlobsRequest{InstanceName: "a/../b", Digests: []*repb.Digest{good.Proto()}})
	wantStatus(t, err, codes.InvalidArgument)
	huge := sha("x").Proto()
	huge.SizeBytes = storage.DefaultMaxBatchTotalSizeBytes + 1
	_, err = ts.cas.BatchReadBlobs(ctx, &repb.BatchReadBlobsRequest{Digests: []*repb.Digest{{Hash: "abc"}, huge}})
	wantStatus(t, err, codes.InvalidArgument, "max_batch_total_size_bytes")
}
