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

// TestTenantsSharingAScopeDoNotJoinEachOther: an Execute joins an
// identical execution in flight only if its own tenant queued it. Tenants
// that list the same scope share its names and action cache, but an
// execution runs in its image with its queuer's registry credentials: a
// tenant the registry refused made the other's identical Execute fail
// PERMISSION_DENIED, and one got the uncached output of an action in an
// image only the other may pull.
func TestTenantsSharingAScopeDoNotJoinEachOther(t *testing.T) {
	h := newHarness(t, nil)
	ops := map[string]*operation{}
	for _, sub := range []struct{ name, owner string }{{"eps-1", "eps"}, {"twin-1", "twin"}, {"eps-2", "eps"}} {
		op, err := h.c.Execute(h.now, submission{name: sub.name, instance: "shared/eps", owner: sub.owner, action: actionDigest("same action"), cacheable: true})
		if err != nil {
			t.Fatal(err)
		}
		ops[sub.name] = op
	}
	if ops["twin-1"].exec == ops["eps-1"].exec {
		t.Error("twin's Execute joined eps's execution of the same action")
	}
	if ops["eps-2"].exec != ops["eps-1"].exec {
		t.Error("eps's second Execute did not join its first")
	}
	// So too after a restart from a snapshot of the state.
	c := replayed(t, h.cfg, nil, mustState(t, h.c), nil)
	for _, sub := range []struct{ name, owner, joins string }{{"twin-2", "twin", "twin-1"}, {"eps-3", "eps", "eps-1"}} {
		op, err := c.Execute(h.now, submission{name: sub.name, instance: "shared/eps", owner: sub.owner, action: actionDigest("same action"), cacheable: true})
		if err != nil {
			t.Fatal(err)
		}
		if op.exec == nil || op.exec.id != sub.joins {
			t.Errorf("after a restart %s joined %v, want %s's execution", sub.name, op.exec, sub.joins)
		}
	}
	h.collect()
	h.connect("w", 4, nil)
	got := map[string]string{}
	for _, a := range h.assignments() {
		got[a.name] = a.worker
	}
	if len(got) != 2 || got["eps-1"] == "" || got["twin-1"] == "" {
		t.Errorf("dispatched %v, want eps's and twin's executions", got)
	}
}
