package asset

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/auth"
)

// A tenant has half the download slots: its third waits while another
// tenant's start; with every slot taken, anyone's waits; a slot given
// back lets the next one in.
func TestDownloadSlots(t *testing.T) {
	s := newDownloadSlots(4)
	as := func(tenant string) context.Context {
		return auth.NewContext(t.Context(), &auth.Principal{Tenant: tenant})
	}
	waits := func(ctx context.Context, what string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		if _, err := s.take(ctx); status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("%s: %v, want it to wait for a slot", what, err)
		}
	}
	take := func(ctx context.Context, what string) func() {
		t.Helper()
		done, err := s.take(ctx)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return done
	}
	a1, _ := take(as("a"), "a's first"), take(as("a"), "a's second")
	waits(as("a"), "a's third")
	take(as("b"), "b's first")
	take(as("b"), "b's second")
	waits(as("c"), "c's first, with every slot taken")
	a1()
	take(as("c"), "c's first, once a gave one back")
}
