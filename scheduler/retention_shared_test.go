package scheduler

import (
	"fmt"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
)

// The operations following one execution share its response, and it is
// counted once against max_completed_bytes. Counted once per waiter,
// twenty clients following an action with a 4 MB result took 80 MB of
// the 64 MiB bound, and all but one of them were forgotten in the very
// transaction that completed them: their Execute streams and
// WaitExecutions answered NOT_FOUND for an action that had succeeded.
// Forgotten early, they go together (dropping one frees nothing); a
// snapshot writes their response once, and a restore shares it again.
func TestFollowersOfOneExecutionShareTheirResponse(t *testing.T) {
	const followers = 20
	h := newHarness(t, func(c *Config) { c.MaxCompletedBytes = 4000 })
	h.connect("w", 1, nil)
	for i := range followers {
		h.execute(fmt.Sprint("f", i), "big", "", 0)
	}
	if got := len(h.assignments()); got != 1 {
		t.Fatalf("%d assignments for %d identical Executes, want 1", got, followers)
	}
	resp := &repb.ExecuteResponse{Result: &repb.ActionResult{StdoutRaw: []byte(strings.Repeat("o", 3000))}}
	h.c.Result(h.now, "w", h.gens["w"], "f0", 1, resp)
	h.collect()
	for i := range followers {
		v, ok := h.c.Operation(fmt.Sprint("f", i))
		if !ok || !v.done || len(v.response.GetResult().GetStdoutRaw()) != 3000 {
			t.Fatalf("follower f%d: known %v, done %v; every follower of a 3 KB result under a 4 KB bound should have it", i, ok, v.done)
		}
	}
	if h.c.completedBytes > 4000 {
		t.Fatalf("the shared response counts %d bytes, want it once (about 3 KB)", h.c.completedBytes)
	}

	// Through a snapshot: the response is written once, and shared again.
	enc, err := encodeState(mustState(t, h.c))
	if err != nil {
		t.Fatal(err)
	}
	if len(enc) > 6000 {
		t.Fatalf("the snapshot takes %d bytes for one 3 KB response shared by %d operations, want it written once", len(enc), followers)
	}
	st, err := decodeState(enc)
	if err != nil {
		t.Fatal(err)
	}
	r := replayed(t, h.cfg, nil, st, nil)
	first := r.ops["f0"].response
	for i := range followers {
		if op := r.ops[fmt.Sprint("f", i)]; op == nil || op.response != first || len(first.GetResult().GetStdoutRaw()) != 3000 {
			t.Fatalf("restored f%d does not share f0's response", i)
		}
	}
	if r.completedBytes > 4000 {
		t.Fatalf("restored, the shared response counts %d bytes, want it once", r.completedBytes)
	}

	// A newer response past the bound forgets the followers together.
	h.c.AddCompleted(h.now, "hit", "", "", actionDigest("other"), &repb.ExecuteResponse{Message: strings.Repeat("m", 2000)})
	h.collect()
	for i := range followers {
		if _, ok := h.c.Operation(fmt.Sprint("f", i)); ok {
			t.Fatalf("f%d is still known though the responses retained pass the bound", i)
		}
	}
	if _, ok := h.c.Operation("hit"); !ok {
		t.Fatal("the newest completed operation was forgotten")
	}
	if h.c.completedBytes > 4000 {
		t.Fatalf("%d bytes counted after the followers were forgotten", h.c.completedBytes)
	}
}

// A snapshot naming a response shared with an operation that is not an
// earlier one is refused, not restored with a response missing.
func TestSnapshotWithABadSharedResponseIsRefused(t *testing.T) {
	h := newHarness(t, nil)
	h.c.AddCompleted(h.now, "a", "", "", actionDigest("a"), &repb.ExecuteResponse{Message: "a"})
	h.c.AddCompleted(h.now, "b", "", "", actionDigest("b"), &repb.ExecuteResponse{Message: "b"})
	h.collect()
	st := mustState(t, h.c)
	st.Ops[0].SameAs, st.Ops[0].Response = 2, nil // "a" sharing the later "b"'s
	enc, err := encodeState(st)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decodeState(enc); err == nil || !strings.Contains(err.Error(), "not an earlier one") {
		t.Fatalf("decoding a snapshot whose operation shares a later one's response: %v, want a refusal", err)
	}
}

// A version 4 snapshot, without the shared responses at its end, is still
// read: each operation holds its own response.
func TestVersion4SnapshotIsRead(t *testing.T) {
	h := newHarness(t, nil)
	h.c.AddCompleted(h.now, "a", "", "", actionDigest("a"), &repb.ExecuteResponse{Message: "a"})
	h.collect()
	enc, err := encodeState(mustState(t, h.c))
	if err != nil {
		t.Fatal(err)
	}
	if enc[0] != stateVersion || enc[len(enc)-1] != 0 {
		t.Fatalf("the snapshot starts with version %d and ends with %d, want %d and no shared response", enc[0], enc[len(enc)-1], stateVersion)
	}
	v4 := append([]byte{4}, enc[1:len(enc)-1]...)
	st, err := decodeState(v4)
	if err != nil {
		t.Fatalf("decoding a version 4 snapshot: %v", err)
	}
	if r := replayed(t, h.cfg, nil, st, nil); r.ops["a"].response.GetMessage() != "a" {
		t.Fatalf("the version 4 snapshot's operation has response %v", r.ops["a"].response)
	}
}

// Past max_completed_bytes the tenant that holds the most gives up its
// oldest first. Before, the oldest of all went: an outside probe's 20
// cache hits of a 4 MB result in a second made every other tenant's
// finished operations NOT_FOUND to WaitExecution well within their
// completed_retention.
func TestRetainedBytesAreForgottenFromTheHeaviestTenant(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxCompletedBytes = 5000 })
	kb := func(s string) *repb.ExecuteResponse {
		return &repb.ExecuteResponse{CachedResult: true, Message: strings.Repeat(s, 1000)}
	}
	h.c.AddCompleted(h.now, "a1", "team-a", "team-a", actionDigest("a"), kb("a"))
	h.collect()
	var first *operation
	for i := range 20 {
		op := h.c.AddCompleted(h.now, fmt.Sprint("b", i), "team-b", "team-b", actionDigest("b"), kb("b"))
		if i == 0 {
			first = op
		}
		h.collect()
	}
	if _, ok := h.c.Operation("a1"); !ok {
		t.Fatal("team-a's operation was forgotten for team-b's responses")
	}
	if _, ok := h.c.Operation("b19"); !ok {
		t.Fatal("the newest completed operation was forgotten")
	}
	if _, ok := h.c.Operation("b0"); ok {
		t.Fatal("team-b's oldest is still known past the bound")
	}
	if h.c.completedBytes > 5000 {
		t.Fatalf("%d bytes retained under a bound of 5000", h.c.completedBytes)
	}
	if first.response != nil {
		t.Fatal("a forgotten operation's entry, kept in the completion order until its retention is up, still holds its response")
	}
	// The journal gives the same state under any bound.
	want := mustState(t, h.c)
	for _, bound := range []int64{5000, 1 << 30, 1} {
		cfg := h.cfg
		cfg.MaxCompletedBytes = bound
		if got := mustState(t, replayed(t, cfg, nil, nil, h.records)); !equalStates(got, want) {
			t.Fatalf("replay under max_completed_bytes %d gave another state", bound)
		}
	}
}

// A response shared by several followers stays counted while any of them
// is retained: deleting the one that carried the count passes it on.
func TestDeletingAFollowerKeepsTheSharedResponseCounted(t *testing.T) {
	h := newHarness(t, nil)
	h.connect("w", 1, nil)
	for i := range 3 {
		h.execute(fmt.Sprint("f", i), "shared", "", 0)
	}
	h.c.Result(h.now, "w", h.gens["w"], "f0", 1, &repb.ExecuteResponse{Result: &repb.ActionResult{StdoutRaw: []byte(strings.Repeat("o", 3000))}})
	h.collect()
	counted := h.c.completedBytes
	if counted < 3000 || counted > 4000 {
		t.Fatalf("three followers of a 3 KB response count %d bytes, want it once", counted)
	}
	for i, name := range []string{"f0", "f2", "f1"} {
		if err := h.c.Delete(h.now, name); err != nil {
			t.Fatal(err)
		}
		h.collect()
		want := counted
		if i == 2 {
			want = 0
		}
		if h.c.completedBytes != want {
			t.Fatalf("after deleting %s: %d bytes counted, want %d", name, h.c.completedBytes, want)
		}
	}
}
