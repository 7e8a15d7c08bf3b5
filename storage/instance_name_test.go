package storage_test

import (
	"context"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// badInstanceNames are names no ByteStream resource name can carry, with
// the segment the refusal must name.
var badInstanceNames = []struct{ what, name, segment string }{
	{"blobs", "team/blobs/x", `"blobs"`},
	{"uploads", "a/uploads/b", `"uploads"`},
	{"actionResults", "x/actionResults", `"actionResults"`},
	{"leading slash", "/lead", "empty path segment"},
	{"trailing slash", "trail/", "empty path segment"},
	{"dot", "a/./b", `"."`},
	{"dot-dot", "..", `".."`},
}

// TestCASRefusesInstanceNamesByteStreamCannotAddress: every CAS and
// Capabilities RPC refuses such a name with INVALID_ARGUMENT naming
// instance_name and the segment, and a batch stores nothing under it,
// since no client could read it back. Names with spaces, non-ASCII
// letters or several segments stay valid: stored by a batch, they are
// read back through ByteStream under the same name.
func TestCASRefusesInstanceNamesByteStreamCannotAddress(t *testing.T) {
	ts := startServer(t, storage.ServerOptions{})
	ctx := context.Background()
	d := sha("blob")
	for _, bad := range badInstanceNames {
		t.Run(bad.what, func(t *testing.T) {
			_, err := ts.caps.GetCapabilities(ctx, &repb.GetCapabilitiesRequest{InstanceName: bad.name})
			wantStatus(t, err, codes.InvalidArgument, "instance_name", bad.segment)
			_, err = ts.cas.FindMissingBlobs(ctx, &repb.FindMissingBlobsRequest{InstanceName: bad.name, BlobDigests: []*repb.Digest{d.Proto()}})
			wantStatus(t, err, codes.InvalidArgument, "instance_name", bad.segment)
			_, err = ts.cas.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{InstanceName: bad.name,
				Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: d.Proto(), Data: []byte("blob")}}})
			wantStatus(t, err, codes.InvalidArgument, "instance_name", bad.segment)
			if !missing(t, ts.disk, d)[d] {
				t.Fatalf("BatchUpdateBlobs under %q stored the blob", bad.name)
			}
			_, err = ts.cas.BatchReadBlobs(ctx, &repb.BatchReadBlobsRequest{InstanceName: bad.name, Digests: []*repb.Digest{d.Proto()}})
			wantStatus(t, err, codes.InvalidArgument, "instance_name", bad.segment)
			_, err = recvTree(ctx, ts, &repb.GetTreeRequest{InstanceName: bad.name, RootDigest: d.Proto()})
			wantStatus(t, err, codes.InvalidArgument, "instance_name", bad.segment)
		})
	}
	for i, name := range []string{"", "has space", "ünï", "team/a/b"} {
		data := []byte{'b', byte(i)}
		d := digest.FromBytes(repb.DigestFunction_SHA256, data)
		if _, err := ts.caps.GetCapabilities(ctx, &repb.GetCapabilitiesRequest{InstanceName: name}); err != nil {
			t.Fatalf("GetCapabilities under %q: %v", name, err)
		}
		resp, err := ts.cas.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{InstanceName: name,
			Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: d.Proto(), Data: data}}})
		if err != nil || resp.Responses[0].Status.GetCode() != 0 {
			t.Fatalf("BatchUpdateBlobs under %q: %v, %v", name, resp, err)
		}
		rn := digest.ResourceName{InstanceName: name, Digest: d}
		got, err := read(ts, &bytestream.ReadRequest{ResourceName: rn.String()})
		if err != nil || string(got) != string(data) {
			t.Fatalf("ByteStream read of %s: %q, %v", rn, got, err)
		}
	}
}

// TestActionCacheRefusesInstanceNamesByteStreamCannotAddress: a result is
// neither stored nor looked up under such a name.
func TestActionCacheRefusesInstanceNamesByteStreamCannotAddress(t *testing.T) {
	ts := startServer(t, storage.ServerOptions{})
	ctx := context.Background()
	action := putString(t, ts.disk, "an action")
	for _, bad := range badInstanceNames {
		t.Run(bad.what, func(t *testing.T) {
			_, err := ts.acc.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{InstanceName: bad.name,
				ActionDigest: action.Proto(), ActionResult: &repb.ActionResult{}})
			wantStatus(t, err, codes.InvalidArgument, "instance_name", bad.segment)
			if _, err := ts.ac.Get(ctx, bad.name, action); err == nil {
				t.Fatalf("UpdateActionResult under %q stored the result", bad.name)
			}
			_, err = ts.acc.GetActionResult(ctx, &repb.GetActionResultRequest{InstanceName: bad.name, ActionDigest: action.Proto()})
			wantStatus(t, err, codes.InvalidArgument, "instance_name", bad.segment)
		})
	}
}
