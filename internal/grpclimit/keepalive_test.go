package grpclimit

import (
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/internal/h2test"
)

func pingServer(t *testing.T) string {
	return grpctest.Listen(t, func(g *grpc.Server) { healthpb.RegisterHealthServer(g, health.NewServer()) }, New(0).ServerOptions()...)
}

// TestKeepalivePingsAreAccepted: a client pinging a little more than
// MinPingInterval apart on a connection without calls (Bazel with
// --grpc_keepalive_time between builds or actions) keeps its connection.
// grpc-go's default policy sent GOAWAY "too_many_pings" at the fourth.
// The pauses are the pings' spacing, which is what the test is about.
func TestKeepalivePingsAreAccepted(t *testing.T) {
	p := h2test.Dial(t, pingServer(t))
	for i := range 5 {
		// The server acks a ping before it sends the GOAWAY the ping
		// earned, so the fifth ping, sent at once, is the one that finds
		// the connection ended or not (a single early ping is one strike
		// of the three the policy allows).
		if i > 0 && i < 4 {
			time.Sleep(MinPingInterval + time.Second)
		}
		if ok, why := p.Ping(byte(i + 1)); !ok {
			t.Fatalf("ping %d: connection ended: %s", i+1, why)
		}
	}
}

// TestPingFloodIsRefused: a client pinging faster than MinPingInterval
// still gets GOAWAY "too_many_pings" after three strikes.
func TestPingFloodIsRefused(t *testing.T) {
	p := h2test.Dial(t, pingServer(t))
	for i := range 10 {
		ok, why := p.Ping(byte(i + 1))
		if !ok {
			if why != "too_many_pings" {
				t.Fatalf("ping %d: connection ended with %q, want GOAWAY too_many_pings", i+1, why)
			}
			if i < 3 {
				t.Fatalf("GOAWAY at ping %d, before three strikes", i+1)
			}
			return
		}
	}
	t.Fatal("10 pings in a row were all answered")
}
