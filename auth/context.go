package auth

import "context"

type principalKey struct{}

// NewContext returns ctx carrying the caller pr.
func NewContext(ctx context.Context, pr *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, pr)
}

// FromContext returns the caller the interceptors authenticated; nil when
// no policy is installed.
func FromContext(ctx context.Context) *Principal {
	pr, _ := ctx.Value(principalKey{}).(*Principal)
	return pr
}

// TenantOf returns the tenant of ctx's caller: "" without a policy (every
// caller is the same tenant then) and for workers.
func TenantOf(ctx context.Context) string {
	if pr := FromContext(ctx); pr != nil {
		return pr.Tenant
	}
	return ""
}
