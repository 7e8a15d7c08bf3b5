package grpclimit

import (
	"context"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/internal/grpctest"
)

// watch opens a Health Watch stream, which stays open, and returns the
// code of its first answer.
func watch(ctx context.Context, c healthpb.HealthClient) codes.Code {
	s, err := c.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err == nil {
		_, err = s.Recv()
	}
	return status.Code(err)
}

// Calls past the bound are refused with RESOURCE_EXHAUSTED, on any
// connection, before the server looks for their method; a call that ends
// gives its place to the next; unary calls count while they run and not
// after; and a health check is always answered.
func TestCallsPastTheBoundAreRefused(t *testing.T) {
	l := New(3)
	addr := grpctest.Listen(t, func(g *grpc.Server) { healthpb.RegisterHealthServer(g, health.NewServer()) }, l.ServerOptions()...)
	conn := grpctest.Dial(t, addr)
	c1 := healthpb.NewHealthClient(conn)
	c2 := healthpb.NewHealthClient(grpctest.Dial(t, addr))
	unknown := func() codes.Code {
		return status.Code(conn.Invoke(t.Context(), "/paddock.test.Nothing/Call", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{}))
	}
	if code := unknown(); code != codes.Unimplemented {
		t.Fatalf("an unknown method below the bound: %v", code)
	}
	var cancels []context.CancelFunc
	for i := range 3 {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		cancels = append(cancels, cancel)
		if code := watch(ctx, []healthpb.HealthClient{c1, c2}[i%2]); code != codes.OK {
			t.Fatalf("watch %d: %v", i, code)
		}
	}
	if code := watch(t.Context(), c2); code != codes.ResourceExhausted {
		t.Fatalf("a fourth call: %v, want RESOURCE_EXHAUSTED", code)
	}
	if code := unknown(); code != codes.ResourceExhausted {
		t.Fatalf("a unary call at the bound: %v, want RESOURCE_EXHAUSTED", code)
	}
	if _, err := c1.Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("a health check at the bound: %v", err)
	}
	cancels[0]()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code := unknown()
		if code == codes.Unimplemented {
			break
		}
		if code != codes.ResourceExhausted || time.Now().After(deadline) {
			t.Fatalf("after a call ended: %v", code)
		}
	}
	cancels[1]()
	cancels[2]()
	for l.Active() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls still counted after all ended", l.Active())
		}
		time.Sleep(time.Millisecond)
	}
}

// Headers past MaxHeaderBytes are refused, and the server goes on: a
// stream keeps its headers for its whole life, so 1 MiB of them on each
// of 2,000 idle streams was 2 GB of the server's memory.
func TestLargeHeadersAreRefused(t *testing.T) {
	addr := grpctest.Listen(t, func(g *grpc.Server) { healthpb.RegisterHealthServer(g, health.NewServer()) }, New(10).ServerOptions()...)
	c := healthpb.NewHealthClient(grpctest.Dial(t, addr))
	for _, n := range []int{2 << 20, MaxHeaderBytes + 1} {
		ctx := metadata.AppendToOutgoingContext(t.Context(), "padding", strings.Repeat("x", n))
		if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{}); err == nil {
			t.Fatalf("a call with %d bytes of headers was served", n)
		}
	}
	ctx := metadata.AppendToOutgoingContext(t.Context(), "padding", strings.Repeat("x", 8<<10))
	if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("a call with 8 KiB of headers: %v", err)
	}
}

func TestDefaultMaxFollowsMemory(t *testing.T) {
	if got := New(0).max; got < 4096 || got != int64(DefaultMax()) {
		t.Fatalf("New(0) bound %d, DefaultMax %d", got, DefaultMax())
	}
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		t.Fatal(err)
	}
	if m := MemoryBytes(); m == 0 || m > uint64(si.Totalram)*uint64(si.Unit) {
		t.Fatalf("memoryBytes %d, the machine has %d", m, uint64(si.Totalram)*uint64(si.Unit))
	}
}
