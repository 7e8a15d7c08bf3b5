package storage_test

import (
	"context"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// TestGetTreeHoldsChildrenToTheRootsFunction: with digest_function unset
// the function is the root digest's (inferred from its length, as REv2
// says), and a child digest of another function is INVALID_ARGUMENT, as it
// is when the request names the function; a tree of one function is
// walked either way.
func TestGetTreeHoldsChildrenToTheRootsFunction(t *testing.T) {
	ts := startServer(t, storage.ServerOptions{})
	ctx := context.Background()
	sha1Child := digest.FromBytes(repb.DigestFunction_SHA1, nil) // the empty Directory, always present
	mixed := putProto(t, ts.disk, &repb.Directory{Directories: []*repb.DirectoryNode{{Name: "a", Digest: sha1Child.Proto()}}})
	for _, fn := range []repb.DigestFunction_Value{repb.DigestFunction_UNKNOWN, repb.DigestFunction_SHA256} {
		_, err := recvTree(ctx, ts, &repb.GetTreeRequest{RootDigest: mixed.Proto(), DigestFunction: fn})
		wantStatus(t, err, codes.InvalidArgument, `subdirectory[0]`, "SHA256")
	}
	same := putProto(t, ts.disk, &repb.Directory{Directories: []*repb.DirectoryNode{{Name: "a", Digest: sha("").Proto()}}})
	got, err := recvTree(ctx, ts, &repb.GetTreeRequest{RootDigest: same.Proto()})
	if err != nil || len(got) != 1 || len(got[0].Directories) != 2 {
		t.Fatalf("a SHA-256 tree, function unset: %v, %v", got, err)
	}
}
