package auth

import (
	"fmt"

	"go.yaml.in/yaml/v3"
)

// Limits are a tenant's bounds on the scheduler's work, from its policy
// entry (max_queued, max_running). Zero means no bound.
type Limits struct {
	// MaxQueued bounds the tenant's queued executions: an Execute that
	// would queue one more fails with RESOURCE_EXHAUSTED.
	MaxQueued int
	// MaxRunning bounds the tenant's executions holding a worker slot;
	// the scheduler dispatches no more of them meanwhile.
	MaxRunning int
}

// TenantLimits returns each tenant's limits, by tenant name; tenants
// without any are left out. A nil policy has none: its one tenant, "",
// is bounded only by the scheduler's own config.
func (p *Policy) TenantLimits() map[string]Limits {
	if p == nil || len(p.limits) == 0 {
		return nil
	}
	out := make(map[string]Limits, len(p.limits))
	for t, l := range p.limits {
		out[t] = l
	}
	return out
}

// addLimits checks tenant i's limits and records them when set.
func (p *Policy) addLimits(t TenantConfig, i int, root *yaml.Node) error {
	for _, f := range []struct {
		key string
		v   int
	}{{"max_queued", t.MaxQueued}, {"max_running", t.MaxRunning}} {
		if f.v < 0 {
			return fmt.Errorf("line %d: tenant %q: %s must be a positive number of actions, or 0 for no limit (got %d)",
				lineOf(root, "tenants", i, f.key), t.Name, f.key, f.v)
		}
	}
	if t.MaxQueued > 0 || t.MaxRunning > 0 {
		p.limits[t.Name] = Limits{MaxQueued: t.MaxQueued, MaxRunning: t.MaxRunning}
	}
	return nil
}
