package auth

import (
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// tenantCalls bounds each tenant's calls in progress. A server's bound on
// calls (internal/grpclimit) is for the process's memory; without a
// share, one tenant's idle streams could hold all of it, and every other
// tenant's calls were refused. The share is taken in the server's tap
// (Interceptors.Admit) where there is one, so that a call counts from its
// headers on, before its request has arrived.
// Calls of the public methods (health), which need no credentials, count
// as one party of their own with a small bound (maxPublicCalls): before,
// anyone reaching the port held the whole bound with idle health Watch
// streams. Health Check counts as another such party (partyOf).
// Identified callers without a tenant (workers, schedulers acting for
// themselves, the farm's own clients) are not counted here.
type tenantCalls struct {
	max  int
	mu   sync.Mutex
	open map[string]int
}

// publicParty is the key the public methods' calls count under, and
// healthCheckParty that of Health Check's (partyOf): no tenant name can
// be either (tenant names are printable).
const (
	publicParty      = "\x00public"
	healthCheckParty = "\x00health-check"
)

// healthCheck is the method partyOf counts apart.
const healthCheck = "/grpc.health.v1.Health/Check"

// maxPublicCalls bounds the public methods' calls in progress: health
// probes need a handful.
const maxPublicCalls = 1024

// take counts a call of tenant, or refuses it with RESOURCE_EXHAUSTED
// when the tenant has max in progress. The returned func ends the call.
func (c *tenantCalls) take(tenant string) (func(), error) {
	if c == nil || tenant == "" {
		return func() {}, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if (tenant == publicParty || tenant == healthCheckParty) && c.open[tenant] >= min(c.max, maxPublicCalls) {
		refusals.share.Add(1)
		return nil, status.Errorf(codes.ResourceExhausted, "%d calls of public methods (health) are in progress, as many as this server takes at once; retry later", c.open[tenant])
	}
	if c.open[tenant] >= c.max {
		refusals.share.Add(1)
		return nil, status.Errorf(codes.ResourceExhausted, "tenant %q has %d calls in progress, as many as one tenant may have at once; retry later", tenant, c.max)
	}
	c.open[tenant]++
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.open[tenant]--; c.open[tenant] == 0 {
			delete(c.open, tenant)
		}
	}, nil
}

// LimitTenantCalls makes the interceptors refuse a tenant's call with
// RESOURCE_EXHAUSTED while the tenant has max calls in progress (streams
// included, from their start). Give it a share of the server's own bound
// on calls, so that the other tenants keep the rest. It returns a.
func (a *Interceptors) LimitTenantCalls(max int) *Interceptors {
	if a != nil && max > 0 {
		a.calls = &tenantCalls{max: max, open: map[string]int{}}
	}
	return a
}
