package asset

import (
	"context"

	rapb "github.com/bazelbuild/remote-apis/build/bazel/remote/asset/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/paddock-build/paddock/auth"
	"github.com/paddock-build/paddock/internal/hops"
)

// Proxy serves Fetch and Push by forwarding every call to the storage
// role, so that `paddock scheduler`, which fronts storage for clients that
// know one address, fronts this API too, over storage's one set of
// records. The caller's RequestMetadata is passed on (it decides how a
// failed fetch is reported), and so are the storage's statuses.
type Proxy struct {
	fetch rapb.FetchClient
	push  rapb.PushClient
}

// NewProxy forwards to the Remote Asset API served at conn.
func NewProxy(conn grpc.ClientConnInterface) *Proxy {
	conn = hops.Conn(conn) // a proxy pointed back at itself is refused, not a loop
	return &Proxy{fetch: rapb.NewFetchClient(conn), push: rapb.NewPushClient(conn)}
}

// Register adds Fetch and Push to g.
func (p *Proxy) Register(g *grpc.Server) {
	rapb.RegisterFetchServer(g, fetchProxy{c: p.fetch})
	rapb.RegisterPushServer(g, pushProxy{c: p.push})
}

// forward returns ctx with the caller's RequestMetadata as outgoing
// metadata, and the caller's tenant (auth.ForwardTenant): the proxy calls
// storage with its own credentials, so the caller's must not travel
// along, but storage counts the call in the tenant's shares (its
// downloads among them) and lets it push as the tenant, when the policy
// lists this scheduler under schedulers. Nothing else of the caller's
// metadata is passed on: a header a client sent naming a tenant is not.
func forward(ctx context.Context) context.Context {
	in, _ := metadata.FromIncomingContext(ctx)
	out := metadata.MD{}
	if v := in.Get(requestMetadataHeader); len(v) > 0 {
		out.Set(requestMetadataHeader, v...)
	}
	return auth.ForwardTenant(metadata.NewOutgoingContext(ctx, out))
}

type fetchProxy struct {
	rapb.UnimplementedFetchServer
	c rapb.FetchClient
}

func (p fetchProxy) FetchBlob(ctx context.Context, req *rapb.FetchBlobRequest) (*rapb.FetchBlobResponse, error) {
	return p.c.FetchBlob(forward(ctx), req)
}

func (p fetchProxy) FetchDirectory(ctx context.Context, req *rapb.FetchDirectoryRequest) (*rapb.FetchDirectoryResponse, error) {
	return p.c.FetchDirectory(forward(ctx), req)
}

type pushProxy struct {
	rapb.UnimplementedPushServer
	c rapb.PushClient
}

func (p pushProxy) PushBlob(ctx context.Context, req *rapb.PushBlobRequest) (*rapb.PushBlobResponse, error) {
	return p.c.PushBlob(forward(ctx), req)
}

func (p pushProxy) PushDirectory(ctx context.Context, req *rapb.PushDirectoryRequest) (*rapb.PushDirectoryResponse, error) {
	return p.c.PushDirectory(forward(ctx), req)
}
