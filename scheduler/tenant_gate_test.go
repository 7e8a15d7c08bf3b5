package scheduler

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A tenant's second call waits for its first (here until its context
// ends); another tenant's goes through meanwhile; once the first ends,
// the tenant's next goes through.
func TestTenantGateTakesTurns(t *testing.T) {
	var g tenantGate
	doneA, err := g.take(t.Context(), "a")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := g.take(ctx, "a"); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("tenant a's second call while its first is in: %v, want it to wait (DEADLINE_EXCEEDED)", err)
	}
	doneB, err := g.take(t.Context(), "b")
	if err != nil {
		t.Fatalf("tenant b while a is in: %v", err)
	}
	doneB()
	doneA()
	again, err := g.take(t.Context(), "a")
	if err != nil {
		t.Fatalf("tenant a after its first ended: %v", err)
	}
	again()
}
