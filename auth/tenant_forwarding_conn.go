package auth

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// OnBehalfOfHeader is the gRPC metadata key in which a scheduler names
// the tenant whose client's call it forwards to storage. Storage honours
// it only from an identity the policy lists under schedulers
// (Policy.actingFor); from anyone else it changes nothing.
const OnBehalfOfHeader = "paddock-on-behalf-of"

// ForwardTenant returns ctx with outgoing metadata naming the tenant of
// ctx's caller (TenantOf) in OnBehalfOfHeader, replacing any value there,
// so that a call made for that caller counts as the tenant's at the
// server it goes to. ctx is returned as it is when the caller has no
// tenant: a worker's, or no caller (a role's own work, a process without
// a policy). Incoming metadata is never copied: a client cannot name a
// tenant through a scheduler.
func ForwardTenant(ctx context.Context) context.Context {
	tenant := TenantOf(ctx)
	if tenant == "" {
		return ctx
	}
	md, _ := metadata.FromOutgoingContext(ctx)
	md = md.Copy()
	md.Set(OnBehalfOfHeader, tenant)
	return metadata.NewOutgoingContext(ctx, md)
}

// ForwardTenants wraps conn so that every call on it names the tenant of
// its context's caller (ForwardTenant). A scheduler's front reaches
// storage through one such connection for every tenant; a worker's calls,
// which carry no caller, go unchanged.
func ForwardTenants(conn grpc.ClientConnInterface) grpc.ClientConnInterface {
	return tenantForwardingConn{conn}
}

// tenantForwardingConn is ForwardTenants' connection.
type tenantForwardingConn struct{ grpc.ClientConnInterface }

func (c tenantForwardingConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	return c.ClientConnInterface.Invoke(ForwardTenant(ctx), method, args, reply, opts...)
}

func (c tenantForwardingConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return c.ClientConnInterface.NewStream(ForwardTenant(ctx), desc, method, opts...)
}
