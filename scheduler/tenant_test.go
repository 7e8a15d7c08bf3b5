package scheduler

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/auth"
)

// executeAs submits an action of tenant; it returns Execute's error.
func (h *harness) executeAs(tenant, name, key, invocation string, priority int32, routing ...*workerpb.Property) error {
	h.t.Helper()
	qk := ""
	for _, p := range routing {
		qk += "\x00" + p.Name + "=" + p.Value
	}
	_, err := h.c.Execute(h.now, submission{
		name: name, instance: tenant, owner: tenant, action: actionDigest(key), cacheable: true, priority: priority,
		invocation: invocation, queueKey: tenant + qk, routing: routing,
	})
	h.collect()
	return err
}

func (h *harness) mustExecuteAs(tenant, name, key, invocation string, priority int32, routing ...*workerpb.Property) {
	h.t.Helper()
	if err := h.executeAs(tenant, name, key, invocation, priority, routing...); err != nil {
		h.t.Fatalf("execute %s as %q: %v", name, tenant, err)
	}
}

// queueAs queues n actions of tenant's invocation at priority 0, the i-th
// named fmt.Sprintf(nameFormat, i) and keyed keyPrefix and i.
func (h *harness) queueAs(tenant, invocation, nameFormat, keyPrefix string, n int) {
	h.t.Helper()
	for i := 0; i < n; i++ {
		h.mustExecuteAs(tenant, fmt.Sprintf(nameFormat, i), fmt.Sprint(keyPrefix, i), invocation, 0)
	}
}

// dispatchOrder runs everything queued on worker w, one slot, completing
// each action as it arrives, and returns the dispatch order.
func (h *harness) dispatchOrder(w string, n int) []string {
	h.t.Helper()
	var order []string
	for len(order) < n {
		got := h.assignments()
		if len(got) != 1 {
			h.t.Fatalf("after %d dispatches got %v", len(order), got)
		}
		order = append(order, got[0].name)
		h.result(w, got[0].name, 1, 0)
	}
	return order
}

// lastIndex is the position of the last name with prefix in order.
func lastIndex(order []string, prefix string) int {
	last := -1
	for i, n := range order {
		if strings.HasPrefix(n, prefix) {
			last = i
		}
	}
	return last
}

// wantAllWithin wants who's actions, named with prefix, among the first n
// of order: they took turns rather than waiting behind a bigger queue.
func wantAllWithin(t *testing.T, order []string, prefix string, n int, who string) {
	t.Helper()
	if last := lastIndex(order, prefix); last >= n {
		t.Fatalf("%s's last action was dispatch #%d, want < %d (order starts %v)", who, last, n, order[:n+5])
	}
}

// Tenant A queues 1,000 actions, then B 10: with one worker slot, B's are
// dispatched in turn with A's, not after them.
func TestTenantsTakeTurns(t *testing.T) {
	h := newHarness(t, nil)
	h.queueAs("team-a", "inv-a", "a%04d", "a", 1000)
	h.queueAs("team-b", "inv-b", "b%04d", "b", 10)
	h.connect("w", 1, nil)
	order := h.dispatchOrder("w", 1010)
	wantAllWithin(t, order, "b", 20, "team-b")
	// A's own actions keep their FIFO order.
	prev := ""
	for _, n := range order {
		if n[0] == 'a' {
			if n <= prev {
				t.Fatalf("team-a's actions out of order: %s after %s", n, prev)
			}
			prev = n
		}
	}
}

// A tenant's priority orders its own actions but does not let it overtake
// another tenant: B's priority-100 action goes second, not after A's
// urgent ones.
func TestPriorityDoesNotCrossTenants(t *testing.T) {
	h := newHarness(t, nil)
	for i := 0; i < 5; i++ {
		h.mustExecuteAs("team-a", fmt.Sprintf("a%d", i), fmt.Sprint("a", i), "", int32(-i))
	}
	h.mustExecuteAs("team-b", "b0", "b0", "", 100)
	h.connect("w", 1, nil)
	order := h.dispatchOrder("w", 6)
	want := []string{"a4", "b0", "a3", "a2", "a1", "a0"}
	if fmt.Sprint(order) != fmt.Sprint(want) {
		t.Fatalf("order = %v, want %v (tenants in turn, each by its own priority)", order, want)
	}
}

// Within one tenant, with another tenant busy, two invocations still take
// turns: the small one's 10 actions go within its tenant's first 20 turns.
func TestInvocationsTakeTurnsWithinATenant(t *testing.T) {
	h := newHarness(t, nil)
	h.queueAs("team-a", "big", "a-big%04d", "ab", 1000)
	h.queueAs("team-a", "small", "a-small%04d", "as", 10)
	h.queueAs("team-b", "b", "b%04d", "b", 1000)
	h.connect("w", 1, nil)
	order := h.dispatchOrder("w", 2010)
	wantAllWithin(t, order, "a-small", 40, "team-a's small invocation")
}

// max_running holds a tenant to that many actions on workers, however
// many slots are free; the others' actions run meanwhile, and a finished
// action lets the next one of the tenant go.
func TestMaxRunningIsRespectedWithFreeSlots(t *testing.T) {
	h := newHarness(t, nil)
	h.c.limits = map[string]auth.Limits{"team-a": {MaxRunning: 3}}
	h.queueAs("team-a", "", "a%02d", "a", 50)
	h.queueAs("team-b", "", "b%02d", "b", 20)
	h.connect("w1", 50, nil)
	h.connect("w2", 50, nil)
	count := func(got []sentAssignment) (a, b int) {
		for _, s := range got {
			if s.name[0] == 'a' {
				a++
			} else {
				b++
			}
		}
		return a, b
	}
	got := h.assignments()
	if a, b := count(got); a != 3 || b != 20 {
		t.Fatalf("dispatched %d of team-a's and %d of team-b's; want 3 (max_running) and all 20", a, b)
	}
	var firstA sentAssignment
	for _, s := range got {
		if s.name[0] == 'a' {
			firstA = s
			break
		}
	}
	h.result(firstA.worker, firstA.name, 1, 0)
	if a, _ := count(h.assignments()); a != 1 {
		t.Fatalf("a finished action of team-a let %d more go; want 1", a)
	}
	if got := h.c.tenants["team-a"]; got.running != 3 || got.queued != 46 {
		t.Fatalf("team-a: %d running, %d queued; want 3 and 46", got.running, got.queued)
	}
}

// A slot freed on a worker that cannot run the tenant's waiting action
// still lets it go to a worker that can, which had skipped it.
func TestMaxRunningReleasedElsewhereDispatches(t *testing.T) {
	h := newHarness(t, nil)
	h.c.limits = map[string]auth.Limits{"team-a": {MaxRunning: 1}}
	big := &workerpb.Property{Name: "Pool", Value: "big"}
	h.connect("w1", 1, nil)
	h.connect("w2", 1, nil, big)
	h.mustExecuteAs("team-a", "a-any", "a1", "", 0)
	if got := h.assignments(); len(got) != 1 || got[0].name != "a-any" {
		t.Fatalf("dispatched %v, want a-any", got)
	}
	h.mustExecuteAs("team-a", "a-big", "a2", "", 0, big)
	if got := h.assignments(); len(got) != 0 {
		t.Fatalf("dispatched %v over team-a's max_running", got)
	}
	worker := "w1"
	if h.c.execs["a-any"].worker.id != "w1" {
		worker = "w2"
	}
	h.result(worker, "a-any", 1, 0)
	if got := h.assignments(); len(got) != 1 || got[0].name != "a-big" || got[0].worker != "w2" {
		t.Fatalf("after team-a's action finished, dispatched %v; want a-big on w2", got)
	}
}

// max_queued refuses a new queued action with RESOURCE_EXHAUSTED naming
// the tenant and the limit; merging into an action in flight is not
// refused; other tenants are not limited; a dispatch makes room.
func TestMaxQueuedRefusesNewActions(t *testing.T) {
	h := newHarness(t, nil)
	h.c.limits = map[string]auth.Limits{"team-a": {MaxQueued: 3}}
	for i := 0; i < 3; i++ {
		h.mustExecuteAs("team-a", fmt.Sprint("a", i), fmt.Sprint("a", i), "", 0)
	}
	err := h.executeAs("team-a", "a3", "a3", "", 0)
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), `tenant "team-a"`) || !strings.Contains(err.Error(), "3 queued") {
		t.Fatalf("fourth queued action of team-a: %v; want RESOURCE_EXHAUSTED naming the tenant and 3", err)
	}
	if _, ok := h.c.Operation("a3"); ok {
		t.Fatal("the refused Execute left an operation")
	}
	h.mustExecuteAs("team-a", "a0-again", "a0", "", 0) // merged into a0
	if got := len(h.c.execs["a0"].waiters); got != 2 {
		t.Fatalf("a0 has %d waiters, want 2 (merged)", got)
	}
	for i := 0; i < 10; i++ {
		h.mustExecuteAs("team-b", fmt.Sprint("b", i), fmt.Sprint("b", i), "", 0)
	}
	h.connect("w", 1, nil)
	h.mustExecuteAs("team-a", "a3", "a3", "", 0)
}
