package storage_test

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"sync"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/paddock-build/paddock/auth"
	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/storage"
)

// tenantsSeen records, by method, what each call told the server in
// auth.OnBehalfOfHeader.
type tenantsSeen struct {
	mu   sync.Mutex
	seen map[string][]string
}

func (s *tenantsSeen) record(ctx context.Context, method string) {
	md, _ := metadata.FromIncomingContext(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen[method[strings.LastIndex(method, "/")+1:]] = md.Get(auth.OnBehalfOfHeader)
}

// take returns what was recorded and forgets it.
func (s *tenantsSeen) take() map[string][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := s.seen
	s.seen = map[string][]string{}
	return seen
}

// A scheduler's remote stores name the tenant of the caller each call is
// made for, so that storage counts it in that tenant's shares: the blob
// store with ForwardInstance, on every call, streams included, and the
// action cache that sends the caller's instance name. A store that keeps
// every caller under its configured instance name (a storage in front of
// another CAS) names no one, and a call made for no tenant (a worker's)
// carries nothing.
func TestRemoteStoresNameTheCallersTenant(t *testing.T) {
	rec := &tenantsSeen{seen: map[string][]string{}}
	srv := storage.NewServer(storage.ServerOptions{CAS: storage.NewMemoryBlobStore(), AC: storage.NewMemoryActionCache()})
	t.Cleanup(srv.Close)
	conn := grpctest.Dial(t, grpctest.Listen(t, srv.Register,
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			rec.record(ctx, info.FullMethod)
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			rec.record(ss.Context(), info.FullMethod)
			return h(srv, ss)
		})))
	teamA := storage.WithInstance(auth.NewContext(t.Context(), &auth.Principal{Name: "team-a/ci", Tenant: "team-a"}), "team-a")
	worker := storage.WithInstance(auth.NewContext(t.Context(), &auth.Principal{Name: "worker/w", Worker: true}), "team-a")
	small, large := []byte("small"), bytes.Repeat([]byte("large "), 2<<10)
	use := func(ctx context.Context, cas storage.BlobStore, ac storage.ActionCache) {
		t.Helper()
		for _, b := range [][]byte{small, large} {
			if err := cas.Put(ctx, digest.FromBytes(repb.DigestFunction_SHA256, b), bytes.NewReader(b)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := cas.FindMissing(ctx, []digest.Digest{sha("absent")}); err != nil {
			t.Fatal(err)
		}
		_, _ = ac.Get(ctx, "team-a", sha("action")) // NOT_FOUND, but asked
	}
	for _, c := range []struct {
		what  string
		ctx   context.Context
		cas   storage.RemoteOptions
		under string
		want  string
	}{
		{"team-a's call through a scheduler", teamA, storage.RemoteOptions{ForwardInstance: true, MaxBatchBytes: 1 << 10}, "", "team-a"},
		{"a worker's call", worker, storage.RemoteOptions{ForwardInstance: true, MaxBatchBytes: 1 << 10}, "", ""},
		{"team-a's call through a storage in front", teamA, storage.RemoteOptions{InstanceName: "inst", MaxBatchBytes: 1 << 10}, "inst", ""},
	} {
		ac := storage.NewRemoteActionCache(conn)
		if c.under != "" {
			ac = storage.NewRemoteActionCacheUnder(conn, c.under)
		}
		use(c.ctx, storage.NewRemoteBlobStore(conn, c.cas), ac)
		seen := rec.take()
		for _, m := range []string{"BatchUpdateBlobs", "Write", "FindMissingBlobs", "GetActionResult"} {
			got, ok := seen[m]
			if !ok {
				t.Fatalf("%s: no %s call reached the server (%v)", c.what, m, seen)
			}
			var want []string
			if c.want != "" {
				want = []string{c.want}
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s: %s named %q, want %q", c.what, m, got, want)
			}
		}
	}
}
