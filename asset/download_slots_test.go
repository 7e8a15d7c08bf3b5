package asset

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/auth"
	"github.com/paddock-build/paddock/storage"
)

// A tenant has half the download slots: its third waits while another
// tenant's start; with every slot taken, anyone's waits; a slot given
// back lets the next one in. Without a policy each client is a sharer
// of its own: two stalled fetches of one client had held every download.
func TestDownloadSlots(t *testing.T) {
	s := storage.NewTenantSlots(MaxDownloads)
	as := func(tenant string) context.Context {
		return auth.NewContext(t.Context(), &auth.Principal{Tenant: tenant})
	}
	from := func(ip string) context.Context {
		return peer.NewContext(t.Context(), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000}})
	}
	waits := func(ctx context.Context, what string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		if _, err := s.Take(ctx); status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("%s: %v, want it to wait for a slot", what, err)
		}
	}
	take := func(ctx context.Context, what string) func() {
		t.Helper()
		done, err := s.Take(ctx)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return done
	}
	a1, a2 := take(as("a"), "a's first"), take(as("a"), "a's second")
	waits(as("a"), "a's third")
	b1, b2 := take(as("b"), "b's first"), take(as("b"), "b's second")
	waits(as("c"), "c's first, with every slot taken")
	a1()
	take(as("c"), "c's first, once a gave one back")()
	a2()
	b1()
	b2()

	// No policy: clients.
	x1, x2 := take(from("10.0.0.1"), "x's first"), take(from("10.0.0.1"), "x's second")
	waits(from("10.0.0.1"), "x's third")
	take(from("10.0.0.2"), "y's first, while x holds its half")()
	x1()
	x2()
}
