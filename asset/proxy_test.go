package asset_test

import (
	"testing"

	rapb "github.com/bazelbuild/remote-apis/build/bazel/remote/asset/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/asset"
	"github.com/paddock-build/paddock/internal/grpctest"
)

// Through the proxy (as `paddock scheduler` serves it), pushes land in
// the storage's records, fetches read them, and the caller's metadata
// still decides how a miss is reported.
func TestProxyForwardsCallsAndMetadata(t *testing.T) {
	h := start(t, nil)
	// The storage's asset service, reached by the proxy over loopback.
	srv, err := asset.New(asset.Options{CAS: h.cas, Dir: t.TempDir(), Now: h.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	conn := grpctest.Serve(t, srv.Register)
	pconn := grpctest.Serve(t, asset.NewProxy(conn).Register)
	fetch, push := rapb.NewFetchClient(pconn), rapb.NewPushClient(pconn)

	blob := h.put(t, []byte("through the proxy"))
	if _, err := push.PushBlob(t.Context(), &rapb.PushBlobRequest{Uris: []string{"urn:p"}, BlobDigest: blob.Proto()}); err != nil {
		t.Fatal(err)
	}
	resp, err := fetch.FetchBlob(t.Context(), &rapb.FetchBlobRequest{Uris: []string{"urn:p"}})
	if err != nil || resp.BlobDigest.GetHash() != blob.Hash() {
		t.Fatalf("fetch through the proxy: %v, %v", resp, err)
	}
	_, err = fetch.FetchDirectory(t.Context(), &rapb.FetchDirectoryRequest{})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("empty FetchDirectory through the proxy: %v; want INVALID_ARGUMENT", err)
	}
	// A miss: an error for a client without RequestMetadata, the
	// response's status for Bazel 8.1+.
	miss := &rapb.FetchBlobRequest{Uris: []string{"urn:absent"}}
	if _, err := fetch.FetchBlob(t.Context(), miss); status.Code(err) != codes.NotFound {
		t.Errorf("a miss without RequestMetadata: %v; want NOT_FOUND as the call's error", err)
	}
	if resp, err := fetch.FetchBlob(readsStatus(t), miss); err != nil || codes.Code(resp.Status.GetCode()) != codes.NotFound {
		t.Errorf("a miss for Bazel 9: %v, %v; want NOT_FOUND in the response (the metadata was forwarded)", resp, err)
	}
}
