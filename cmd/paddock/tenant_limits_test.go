package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/internal/farmtest"
	"github.com/paddock-build/paddock/internal/grpctest"
)

// `paddock scheduler --auth` holds each tenant to the max_queued of its
// policy entry: with no worker, team-a's third Execute answers
// RESOURCE_EXHAUSTED naming the tenant and the limit, while team-b, with
// no limit, queues on.
func TestSchedulerCommandAppliesTenantLimits(t *testing.T) {
	dir := t.TempDir()
	hash := func(token string) string { s := sha256.Sum256([]byte(token)); return hex.EncodeToString(s[:]) }
	policy := filepath.Join(dir, "auth.yaml")
	if err := os.WriteFile(policy, []byte(fmt.Sprintf(`tenants:
  - name: team-a
    instance_prefixes: [team-a]
    max_queued: 2
    identities:
      - {token_sha256: %s, permissions: [execute]}
  - name: team-b
    instance_prefixes: [team-b]
    identities:
      - {token_sha256: %s, permissions: [execute]}
`, hash("token-a"), hash("token-b"))), 0o600); err != nil {
		t.Fatal(err)
	}
	storageAddr, _ := start(t, "storage", "--listen", "127.0.0.1:0", "--dir", filepath.Join(dir, "storage"))
	schedAddr, _ := start(t, "scheduler", "--listen", "127.0.0.1:0", "--storage", storageAddr, "--auth", policy)
	storage := grpctest.Dial(t, storageAddr)
	sched := repb.NewExecutionClient(grpctest.Dial(t, schedAddr))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	execute := func(token, instance string, i int) error {
		ad := farmtest.UploadAction(t, storage, instance, nil, "/bin/echo", fmt.Sprint(i))
		s, err := sched.Execute(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token),
			&repb.ExecuteRequest{InstanceName: instance, ActionDigest: ad.Proto()})
		if err == nil {
			_, err = s.Recv()
		}
		return err
	}
	for i := 0; i < 2; i++ {
		if err := execute("token-a", "team-a", i); err != nil {
			t.Fatalf("team-a's Execute %d: %v", i, err)
		}
	}
	err := execute("token-a", "team-a", 2)
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), `tenant "team-a"`) || !strings.Contains(err.Error(), "max_queued") {
		t.Fatalf("team-a's third queued Execute: %v; want RESOURCE_EXHAUSTED naming the tenant and max_queued", err)
	}
	for i := 0; i < 3; i++ {
		if err := execute("token-b", "team-b", i); err != nil {
			t.Fatalf("team-b's Execute %d: %v", i, err)
		}
	}
}
