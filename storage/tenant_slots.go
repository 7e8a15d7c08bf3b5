package storage

import (
	"context"
	"sync"
	"sync/atomic"
)

// tenantSlots is a pool of slots of which one tenant of the auth policy
// holds at most half, so that whatever one tenant holds (calls it never
// reads, say) the others share the rest, as with the ByteStream slots and
// the request memory budget. Callers without a tenant (no policy, or the
// farm's own workers) count only against the whole. A tenant at its share
// waits for one of its own slots to free. The tenant's share is taken
// before the whole's, always in that order, so holders never wait on each
// other in a circle. Safe for concurrent use.
type tenantSlots struct {
	all   chan struct{} // a token per slot held
	share int
	// waiting counts the callers waiting for a slot, for tests.
	waiting atomic.Int64
	mu      sync.Mutex
	// tenants holds each tenant's share, made when it first asks: the
	// policy names the tenants, so there are few.
	tenants map[string]chan struct{}
}

func newTenantSlots(n int) *tenantSlots {
	return &tenantSlots{all: make(chan struct{}, n), share: max(n/2, 1), tenants: map[string]chan struct{}{}}
}

func (p *tenantSlots) tenantShare(tenant string) chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.tenants[tenant]
	if s == nil {
		s = make(chan struct{}, p.share)
		p.tenants[tenant] = s
	}
	return s
}

// take waits as long as ctx lasts for a slot, one of tenant's share
// first, and returns the function that frees it.
func (p *tenantSlots) take(ctx context.Context, tenant string) (release func(), err error) {
	p.waiting.Add(1)
	defer p.waiting.Add(-1)
	var own chan struct{}
	if tenant != "" {
		own = p.tenantShare(tenant)
		if err := take(ctx, own); err != nil {
			return nil, err
		}
	}
	if err := take(ctx, p.all); err != nil {
		if own != nil {
			<-own
		}
		return nil, err
	}
	return func() {
		<-p.all
		if own != nil {
			<-own
		}
	}, nil
}

// held returns how many slots are held, and how many callers wait for
// one.
func (p *tenantSlots) held() (holding, waiting int) {
	return len(p.all), int(p.waiting.Load())
}
