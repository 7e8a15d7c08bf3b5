package asset_test

import (
	"testing"

	rapb "github.com/bazelbuild/remote-apis/build/bazel/remote/asset/v1"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
)

// TestInstanceNamesByteStreamCannotAddress: Fetch and Push refuse an
// instance name no ByteStream resource name can carry with INVALID_ARGUMENT
// naming instance_name and the segment, so no record points clients at
// content they could not read; a name with a space still works.
func TestInstanceNamesByteStreamCannotAddress(t *testing.T) {
	h := start(t, nil)
	ctx := t.Context()
	blob := h.put(t, []byte("artifact"))
	dir := h.putProto(t, &repb.Directory{})
	for _, bad := range []struct{ what, name, segment string }{
		{"blobs", "team/blobs/x", `"blobs"`},
		{"compressed-blobs", "compressed-blobs", `"compressed-blobs"`},
		{"leading slash", "/lead", "empty path segment"},
		{"dot-dot", "a/..", `".."`},
	} {
		t.Run(bad.what, func(t *testing.T) {
			uris := []string{"urn:" + bad.what}
			_, err := h.push.PushBlob(ctx, &rapb.PushBlobRequest{InstanceName: bad.name, Uris: uris, BlobDigest: blob.Proto()})
			wantCode(t, err, codes.InvalidArgument, "instance_name: ")
			wantCode(t, err, codes.InvalidArgument, bad.segment)
			_, err = h.push.PushDirectory(ctx, &rapb.PushDirectoryRequest{InstanceName: bad.name, Uris: uris, RootDirectoryDigest: dir.Proto()})
			wantCode(t, err, codes.InvalidArgument, bad.segment)
			_, err = h.fetch.FetchBlob(ctx, &rapb.FetchBlobRequest{InstanceName: bad.name, Uris: uris})
			wantCode(t, err, codes.InvalidArgument, bad.segment)
			_, err = h.fetch.FetchDirectory(ctx, &rapb.FetchDirectoryRequest{InstanceName: bad.name, Uris: uris})
			wantCode(t, err, codes.InvalidArgument, bad.segment)
		})
	}
	if _, err := h.push.PushBlob(ctx, &rapb.PushBlobRequest{InstanceName: "has space/ünï", Uris: []string{"urn:ok"}, BlobDigest: blob.Proto()}); err != nil {
		t.Fatalf("push under a valid name: %v", err)
	}
	resp, err := h.fetch.FetchBlob(ctx, &rapb.FetchBlobRequest{InstanceName: "has space/ünï", Uris: []string{"urn:ok"}})
	if err != nil || resp.BlobDigest.GetHash() != blob.Hash() {
		t.Fatalf("fetch under a valid name: %v, %v", resp, err)
	}
}
