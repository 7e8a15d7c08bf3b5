package scheduler

import "testing"

// TestAssignmentNamesTheTenantThatQueued: each Assignment names the tenant
// that queued its action, the runner pulling its image with that
// tenant's registry credentials. Tenants that list the same scope share
// its instance names, and the worker, left to ask its policy who owns the
// name, named the first of them for both: the second's actions were
// pulled with the first's credentials.
func TestAssignmentNamesTheTenantThatQueued(t *testing.T) {
	h := newHarness(t, nil)
	for _, owner := range []string{"eps", "twin"} {
		if _, err := h.c.Execute(h.now, submission{name: "op-" + owner, instance: "shared/eps", owner: owner,
			action: actionDigest("action of " + owner), cacheable: true}); err != nil {
			t.Fatal(err)
		}
	}
	h.collect()
	h.connect("w", 2, nil)
	got := map[string]string{}
	for _, m := range h.sent {
		if a := m.msg.GetAssignment(); a != nil {
			got[a.OperationName] = a.Tenant
		}
	}
	if len(got) != 2 || got["op-eps"] != "eps" || got["op-twin"] != "twin" {
		t.Errorf("assignments name the tenants %v, want op-eps eps and op-twin twin", got)
	}
}
