package grpclimit

import (
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/paddock-build/paddock/internal/grpctest"
)

// A client that vanishes without closing its connection (here a proxy
// that stops forwarding either way, as a partition does) has its calls
// ended by the server's unanswered ping: its open Watch stream stops
// counting within the ping's idle time and timeout. Before, the server
// never pinged, and a vanished client's Execute stream stayed open for as
// long as TCP retransmitted, 17 minutes in an outside test.
func TestVanishedClientsCallsEnd(t *testing.T) {
	pingIdleClientAfter, pingTimeout = time.Second, time.Second
	t.Cleanup(func() { pingIdleClientAfter, pingTimeout = time.Minute, 20*time.Second })
	l := New(0)
	addr := grpctest.Listen(t, func(g *grpc.Server) { healthpb.RegisterHealthServer(g, health.NewServer()) }, l.ServerOptions()...)
	proxy := grpctest.NewStallProxy(t, addr)
	stream, err := healthpb.NewHealthClient(grpctest.Dial(t, proxy.Addr)).Watch(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	if n := l.Active(); n != 1 {
		t.Fatalf("%d calls in progress, want the Watch", n)
	}
	proxy.Stall()
	for deadline := time.Now().Add(20 * time.Second); l.Active() != 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the vanished client's Watch is still in progress 20 s later")
		}
	}
}
