package asset_test

import (
	"context"
	"testing"

	rapb "github.com/bazelbuild/remote-apis/build/bazel/remote/asset/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/paddock-build/paddock/asset"
	"github.com/paddock-build/paddock/auth"
	"github.com/paddock-build/paddock/internal/grpctest"
)

// The proxy names its caller's tenant to storage (auth.OnBehalfOfHeader),
// so that storage counts the call in that tenant's shares, and never
// passes on the header its own client sent; a caller without a tenant
// (no policy, a worker) is named by nothing.
func TestProxyNamesTheCallersTenant(t *testing.T) {
	h := start(t, nil)
	srv, err := asset.New(asset.Options{CAS: h.cas, Dir: t.TempDir(), Now: h.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan []string, 1)
	record := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		seen <- md.Get(auth.OnBehalfOfHeader)
		return handler(ctx, req)
	}
	conn := grpctest.Serve(t, srv.Register, grpc.UnaryInterceptor(record))
	// The front's interceptors put the caller in the context; here, the
	// tenant the client's "caller" header says.
	caller := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		if v := md.Get("caller"); len(v) > 0 {
			ctx = auth.NewContext(ctx, &auth.Principal{Name: v[0] + "/ci", Tenant: v[0]})
		}
		return handler(ctx, req)
	}
	fetch := rapb.NewFetchClient(grpctest.Serve(t, asset.NewProxy(conn).Register, grpc.UnaryInterceptor(caller)))
	for _, c := range []struct {
		caller string
		want   []string
	}{{"team-a", []string{"team-a"}}, {"", nil}} {
		ctx := metadata.AppendToOutgoingContext(t.Context(), auth.OnBehalfOfHeader, "team-b")
		if c.caller != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "caller", c.caller)
		}
		_, _ = fetch.FetchBlob(ctx, &rapb.FetchBlobRequest{Uris: []string{"urn:x"}}) // no such record; only what storage was told matters
		if got := <-seen; len(got) != len(c.want) || len(got) > 0 && got[0] != c.want[0] {
			t.Errorf("caller of tenant %q, sending %s team-b: storage was told %q, want %q", c.caller, auth.OnBehalfOfHeader, got, c.want)
		}
	}
}
