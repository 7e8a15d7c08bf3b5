package scheduler

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/auth"
)

// Executes joined to an identical execution in flight are bounded per
// tenant: an outside probe joined one queued action 283,000 times in
// 150 s (each stream cancelled once it had the operation's name) and grew
// the scheduler by 870 MB, though the tenant's max_queued was 5. Past
// joinBound a join answers RESOURCE_EXHAUSTED naming the tenant; another
// tenant is not affected, and the tenant joins again once its operations
// are done.
func TestJoinsAreBoundedPerTenant(t *testing.T) {
	h := newHarness(t, nil)
	h.c.limits = map[string]auth.Limits{"team-b": {MaxQueued: 5}}
	h.mustExecuteAs("team-b", "first", "plan9", "", 0) // no worker: it stays queued
	bound := joinsPerExecution + joinsFree
	for i := 1; i < bound; i++ {
		h.mustExecuteAs("team-b", fmt.Sprint("join", i), "plan9", "", 0)
	}
	err := h.executeAs("team-b", "one-too-many", "plan9", "", 0)
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), `tenant "team-b"`) {
		t.Fatalf("join %d of team-b: %v, want RESOURCE_EXHAUSTED naming the tenant", bound+1, err)
	}
	if _, ok := h.c.Operation("one-too-many"); ok {
		t.Fatal("the refused join left an operation")
	}
	// Another tenant's joins of its own action are not affected.
	for i := range 10 {
		h.mustExecuteAs("team-a", fmt.Sprint("a", i), "plan9", "", 0)
	}
	// Each execution queued or running raises the bound (its own
	// operation is one of those it allows).
	h.mustExecuteAs("team-b", "second", "other", "", 0)
	for i := range joinsPerExecution - 1 {
		h.mustExecuteAs("team-b", fmt.Sprint("join-second", i), "other", "", 0)
	}
	if err := h.executeAs("team-b", "past-second", "other", "", 0); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a join past the raised bound: %v, want RESOURCE_EXHAUSTED", err)
	}
	// Once the executions are done, their operations no longer count.
	h.connect("w", 2, nil)
	for _, a := range h.assignments() {
		h.result("w", a.name, a.attempt, 0)
	}
	h.mustExecuteAs("team-b", "third", "plan9-again", "", 0)
	h.mustExecuteAs("team-b", "join-third", "plan9-again", "", 0)
	checkTenantCounts(t, h.c)
}
