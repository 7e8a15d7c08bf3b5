package storage_test

import (
	"context"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// downStore is a store whose every lookup fails as a shard that is down.
type downStore struct{ storage.BlobStore }

func (downStore) FindMissing(context.Context, []digest.Digest) ([]digest.Digest, error) {
	return nil, status.Error(codes.Unavailable, `storage backend "s1" is unavailable`)
}

// REv2: servers MUST behave as though empty blobs are always available.
// FindMissingBlobs answers for them without asking the store, which
// behind a front may be a shard that is down: an action with an empty
// input root could not run while it was.
func TestFindMissingNeverAsksForTheEmptyBlob(t *testing.T) {
	ts := startServer(t, storage.ServerOptions{CAS: downStore{newDisk(t, t.TempDir(), 0)}})
	ctx := context.Background()
	for _, fn := range []repb.DigestFunction_Value{repb.DigestFunction_SHA256, repb.DigestFunction_SHA512} {
		resp, err := ts.cas.FindMissingBlobs(ctx, &repb.FindMissingBlobsRequest{DigestFunction: fn,
			BlobDigests: []*repb.Digest{digest.Empty(fn).Proto(), digest.Empty(fn).Proto()}})
		if err != nil || len(resp.MissingBlobDigests) != 0 {
			t.Fatalf("%s: FindMissingBlobs of the empty blob: %v, %v; want none missing", fn, resp, err)
		}
	}
	other := digest.FromBytes(repb.DigestFunction_SHA256, []byte("x")).Proto()
	_, err := ts.cas.FindMissingBlobs(ctx, &repb.FindMissingBlobsRequest{BlobDigests: []*repb.Digest{digest.Empty(repb.DigestFunction_SHA256).Proto(), other}})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("FindMissingBlobs of another blob on a down store: %v, want UNAVAILABLE", err)
	}
}
