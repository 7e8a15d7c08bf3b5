package grpclimit

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/paddock-build/paddock/internal/grpctest"
)

type admittedKey struct{}

// The Admissions among a server's other options run in the Limiter's one
// tap, in order, after its bound: one refuses a stream before anything is
// counted for it, and the context one returns is the call's. A health
// Check at the bound still meets them.
func TestAdmissionsRunInTheTap(t *testing.T) {
	var order []string
	refuse := func(ctx context.Context, info *tap.Info) (context.Context, error) {
		order = append(order, "first")
		if md, _ := metadata.FromIncomingContext(ctx); len(md.Get("refuse")) > 0 {
			return nil, status.Error(codes.Unauthenticated, "refused by the admission")
		}
		return context.WithValue(ctx, admittedKey{}, "admitted"), nil
	}
	second := func(ctx context.Context, info *tap.Info) (context.Context, error) {
		order = append(order, "second")
		return ctx, nil
	}
	var handlerSaw any
	look := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		handlerSaw = ctx.Value(admittedKey{})
		return h(ctx, req)
	}
	l := New(1)
	others := []grpc.ServerOption{grpc.UnaryInterceptor(look), WithAdmission(refuse), WithAdmission(second)}
	addr := grpctest.Listen(t, func(g *grpc.Server) { healthpb.RegisterHealthServer(g, health.NewServer()) }, append(others, l.ServerOptions(others...)...)...)
	c := healthpb.NewHealthClient(grpctest.Dial(t, addr))
	if _, err := c.Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil || handlerSaw != "admitted" || len(order) != 2 || order[1] != "second" {
		t.Fatalf("an admitted Check: %v; its handler saw %v; admissions ran %v", err, handlerSaw, order)
	}
	order = nil
	_, err := c.Check(metadata.AppendToOutgoingContext(t.Context(), "refuse", "1"), &healthpb.HealthCheckRequest{})
	if status.Code(err) != codes.Unauthenticated || len(order) != 1 {
		t.Fatalf("a refused Check: %v; admissions ran %v, want the first only", err, order)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	if code := watch(ctx, c); code != codes.OK {
		t.Fatalf("a Watch within the bound: %v", code)
	}
	order = nil
	if code := watch(t.Context(), c); code != codes.ResourceExhausted || len(order) != 0 {
		t.Fatalf("a Watch past the bound: %v, admissions ran %v; want RESOURCE_EXHAUSTED before any", code, order)
	}
	if _, err := c.Check(metadata.AppendToOutgoingContext(t.Context(), "refuse", "1"), &healthpb.HealthCheckRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("a Check at the bound: %v; want it to meet the admissions", err)
	}
}
