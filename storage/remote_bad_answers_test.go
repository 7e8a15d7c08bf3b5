package storage_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/storage/storagetest"
)

// hostileRemote serves a real storage server whose answers rewrite
// changes before they go back.
func hostileRemote(t *testing.T, rewrite func(method string, resp any)) *storage.RemoteBlobStore {
	t.Helper()
	srv := storage.NewServer(storage.ServerOptions{CAS: newDisk(t, t.TempDir(), 0), AC: storage.NewMemoryActionCache()})
	t.Cleanup(srv.Close)
	lie := grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		resp, err := h(ctx, req)
		if err == nil {
			rewrite(info.FullMethod, resp)
		}
		return resp, err
	})
	return storage.NewRemoteBlobStore(grpctest.Serve(t, srv.Register, append(srv.GRPCServerOptions(), lie)...), storage.RemoteOptions{})
}

// A remote answering a malformed digest is the remote's fault: INTERNAL,
// naming the call. Before, the digest check's INVALID_ARGUMENT reached
// the client, which Bazel takes as its own request being wrong and fails
// the build without a retry.
func TestRemoteAnsweringABadDigestIsInternal(t *testing.T) {
	bogus := &repb.Digest{Hash: "zz", SizeBytes: -1}
	remote := hostileRemote(t, func(method string, resp any) {
		switch r := resp.(type) {
		case *repb.FindMissingBlobsResponse:
			r.MissingBlobDigests = append(r.MissingBlobDigests, bogus)
		case *repb.BatchReadBlobsResponse:
			r.Responses = append(r.Responses, &repb.BatchReadBlobsResponse_Response{Digest: bogus})
		}
	})
	ctx := context.Background()
	d, _ := sizedBlob(1000, 1)
	_, err := remote.FindMissing(ctx, []digest.Digest{d})
	if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "FindMissingBlobs answered a bad digest") {
		t.Errorf("FindMissing against a remote answering a bad digest: %v, want INTERNAL naming the call", err)
	}
	_, err = remote.GetMany(ctx, []digest.Digest{d})
	if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "BatchReadBlobs answered a bad digest") {
		t.Errorf("GetMany against a remote answering a bad digest: %v, want INTERNAL naming the call", err)
	}
}

// A remote's reply may take no more than the blobs asked for: one
// answering a BatchReadBlobs of a 1,000-byte blob with 2 MiB is refused
// from the message's length, before its bytes are read (a hostile remote
// answering every such read with 60 MiB took a front to 3 GB), as the
// remote's fault (INTERNAL).
func TestRemoteReplyIsBoundedByWhatWasAskedFor(t *testing.T) {
	remote := hostileRemote(t, func(method string, resp any) {
		if r, ok := resp.(*repb.BatchReadBlobsResponse); ok {
			for _, e := range r.Responses {
				e.Data = make([]byte, 2<<20)
			}
		}
	})
	ctx := context.Background()
	d, data := sizedBlob(1000, 2)
	if err := remote.Put(ctx, d, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	for name, read := range map[string]func() error{
		"Get":     func() error { _, err := storagetest.ReadAll(t, remote, d, 0); return err },
		"GetMany": func() error { _, err := remote.GetMany(ctx, []digest.Digest{d}); return err },
	} {
		if err := read(); status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "answered more bytes than the blobs asked for") {
			t.Errorf("%s against a remote answering 2 MiB for 1,000 bytes: %v, want INTERNAL", name, err)
		}
	}
}
