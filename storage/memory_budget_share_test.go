package storage_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/auth"
	"github.com/paddock-build/paddock/storage"
)

// TestMemoryBudgetTenantsHoldHalf: a tenant of the auth policy holds at
// most half of the budget for blobs read whole, so that its large or
// stuck requests leave the other tenants the rest; a caller without a
// tenant counts only against the whole.
func TestMemoryBudgetTenantsHoldHalf(t *testing.T) {
	as := func(tenant string) context.Context {
		return auth.NewContext(context.Background(), &auth.Principal{Name: tenant, Tenant: tenant})
	}
	half := int64(storage.RequestMemoryBytes / 2 / 3) // blob bytes counted three times
	releaseA, err := storage.HoldMemory(as("team-a"), half)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(as("team-a"), 200*time.Millisecond)
	defer cancel()
	if _, err := storage.HoldMemory(short, 1<<20); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("team-a past its half: %v, want DEADLINE_EXCEEDED", err)
	}
	releaseB, err := storage.HoldMemory(as("team-b"), half)
	if err != nil {
		t.Fatalf("team-b while team-a holds its half: %v", err)
	}
	short2, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	if _, err := storage.HoldMemory(short2, 1<<20); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("a caller without a tenant while the whole is held: %v, want DEADLINE_EXCEEDED", err)
	}
	releaseA()
	releaseB()
	release, err := storage.HoldMemory(context.Background(), storage.RequestMemoryBytes)
	if err != nil {
		t.Fatalf("the whole budget once given back: %v", err)
	}
	release()
}
