package scheduler

import (
	"context"
	"sync"

	"google.golang.org/grpc/status"
)

// tenantGate lets one call per tenant through at a time; the tenant's
// others wait their turn (or their context). For work done under the
// scheduler's lock whose length a tenant sets (a filtered ListOperations
// may walk all its operations, batch by batch): one tenant's many calls
// then take turns with everyone else's instead of queueing on the lock
// together. The zero value is
// ready; a tenant's turn is kept for the process's life (tenants are the
// policy's, few).
type tenantGate struct {
	mu    sync.Mutex
	turns map[string]chan struct{}
}

// take waits for tenant's turn; the returned func ends it.
func (g *tenantGate) take(ctx context.Context, tenant string) (func(), error) {
	g.mu.Lock()
	if g.turns == nil {
		g.turns = map[string]chan struct{}{}
	}
	turn := g.turns[tenant]
	if turn == nil {
		turn = make(chan struct{}, 1)
		g.turns[tenant] = turn
	}
	g.mu.Unlock()
	select {
	case turn <- struct{}{}:
		return func() { <-turn }, nil
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}
