package auth_test

import (
	"fmt"
	"io"
	"sync"
	"testing"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/farmtest"
)

// limitsPolicy gives team-a at most 2 queued actions and 1 running; team-b
// has no limits.
func limitsPolicy() string {
	return fmt.Sprintf(`tenants:
  - name: team-a
    instance_prefixes: [team-a]
    max_queued: 2
    max_running: 1
    identities:
      - {name: ci, token_sha256: %s, permissions: [cas-read, cas-write, ac-read, execute]}
  - name: team-b
    instance_prefixes: [team-b]
    identities:
      - {name: ci, token_sha256: %s, permissions: [cas-read, cas-write, ac-read, execute]}
workers:
  - {name: by-cert, certificate: "spiffe://farm.test/worker"}
`, hashOf(tokenA), hashOf(tokenB))
}

// TestTenantLimitsOverTLS: with the policy's limits, over real TLS with
// tokens, team-a runs one action at a time although the worker has four
// slots, its third queued action is refused with RESOURCE_EXHAUSTED naming
// the tenant and the limit, an Execute of an action it already has in
// flight is merged rather than refused, and team-b is not held back.
func TestTenantLimitsOverTLS(t *testing.T) {
	sf := startSecureFarmWith(t, limitsPolicy())
	a, b := sf.dial(t, tokenA, nil), sf.dial(t, tokenB, nil)
	release := make(chan struct{})
	var once sync.Once
	defer once.Do(func() { close(release) })
	started := make(chan struct{}, 8)
	sf.Runner.Before = func(string) {
		started <- struct{}{}
		<-release
	}
	execute := func(conn grpcConn, instance string, ad digest.Digest) (repb.Execution_ExecuteClient, *longrunningpb.Operation, error) {
		s, err := repb.NewExecutionClient(conn).Execute(t.Context(), &repb.ExecuteRequest{InstanceName: instance, ActionDigest: ad.Proto()})
		if err != nil {
			return nil, nil, err
		}
		first, err := s.Recv()
		return s, first, err
	}
	var streams []repb.Execution_ExecuteClient
	var actions []digest.Digest
	for i := 0; i < 4; i++ {
		actions = append(actions, farmtest.UploadAction(t, a, "team-a", nil, "/bin/echo", fmt.Sprint(i)))
	}
	// The first runs; the next two wait although the worker has room.
	for i := 0; i < 3; i++ {
		s, _, err := execute(a, "team-a", actions[i])
		if err != nil {
			t.Fatalf("team-a's Execute %d: %v", i, err)
		}
		streams = append(streams, s)
		if i == 0 {
			<-started
		}
	}
	// team-b's action runs beside team-a's.
	sb, _, err := execute(b, "team-b", farmtest.UploadAction(t, b, "team-b", nil, "/bin/echo", "b"))
	if err != nil {
		t.Fatalf("team-b's Execute: %v", err)
	}
	streams = append(streams, sb)
	<-started
	var queuedA, runningA int
	for _, q := range sf.Scheduler.Queues() {
		if q.Instance == "team-a" {
			queuedA, runningA = q.Queued, q.Running
		}
	}
	if queuedA != 2 || runningA != 1 {
		t.Fatalf("team-a has %d queued and %d running; want 2 and 1 (max_running 1 with free worker slots)", queuedA, runningA)
	}

	_, _, err = execute(a, "team-a", actions[3])
	wantCode(t, err, codes.ResourceExhausted, "team-a's third queued action", `"team-a"`, "2 queued", "max_queued")
	// The same action as one queued is merged into it: not refused.
	s, first, err := execute(a, "team-a", actions[1])
	if err != nil {
		t.Fatalf("team-a's Execute of an action already queued: %v", err)
	}
	streams = append(streams, s)
	if first.Done {
		t.Fatalf("merged Execute answered done: %v", first)
	}

	once.Do(func() { close(release) })
	for i, s := range streams {
		var last *longrunningpb.Operation
		for {
			op, err := s.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("stream %d: %v", i, err)
			}
			last = op
		}
		if last == nil || !last.Done {
			t.Fatalf("stream %d ended without completing: %v", i, last)
		}
		resp := &repb.ExecuteResponse{}
		if err := last.GetResponse().UnmarshalTo(resp); err != nil || resp.GetStatus().GetCode() != 0 || resp.GetResult().GetExitCode() != 0 {
			t.Fatalf("stream %d: response %v, %v", i, resp, err)
		}
	}
	// With the queue drained, team-a may queue again.
	if _, _, err := execute(a, "team-a", actions[3]); err != nil {
		t.Fatalf("team-a's Execute after its queue drained: %v", err)
	}
}
