package grpcerr_test

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/internal/grpcerr"
	"github.com/paddock-build/paddock/internal/grpctest"
)

// failingHealth answers every call with a status error wrapped twice, as
// a server in front of another one does.
type failingHealth struct {
	grpc_health_v1.UnimplementedHealthServer
}

func (failingHealth) Check(context.Context, *grpc_health_v1.HealthCheckRequest) (*grpc_health_v1.HealthCheckResponse, error) {
	inner, _ := status.New(codes.FailedPrecondition, "blob abc is missing").WithDetails(&errdetails.PreconditionFailure{
		Violations: []*errdetails.PreconditionFailure_Violation{{Type: "MISSING", Subject: "blobs/abc/1"}},
	})
	return nil, fmt.Errorf("find missing blobs: %w", fmt.Errorf("remote FindMissingBlobs: %w", inner.Err()))
}

func (failingHealth) Watch(*grpc_health_v1.HealthCheckRequest, grpc.ServerStreamingServer[grpc_health_v1.HealthCheckResponse]) error {
	return fmt.Errorf("watch: %w", status.Error(codes.NotFound, "no such service"))
}

// TestCleanMessages: a client reads the context words and the inner
// message without Go's "rpc error: code = ... desc =" text, with the inner
// code and details kept, on unary and streaming calls.
func TestCleanMessages(t *testing.T) {
	conn := grpctest.Serve(t, func(g *grpc.Server) { grpc_health_v1.RegisterHealthServer(g, failingHealth{}) }, grpcerr.ServerOptions()...)
	client := grpc_health_v1.NewHealthClient(conn)
	_, err := client.Check(t.Context(), &grpc_health_v1.HealthCheckRequest{})
	st := status.Convert(err)
	if st.Code() != codes.FailedPrecondition || st.Message() != "find missing blobs: remote FindMissingBlobs: blob abc is missing" {
		t.Errorf("unary: %v %q", st.Code(), st.Message())
	}
	if len(st.Details()) != 1 || st.Details()[0].(*errdetails.PreconditionFailure).Violations[0].Subject != "blobs/abc/1" {
		t.Errorf("unary details %v; want the MISSING violation kept", st.Details())
	}
	stream, err := client.Watch(t.Context(), &grpc_health_v1.HealthCheckRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if st := status.Convert(err); st.Code() != codes.NotFound || st.Message() != "watch: no such service" {
		t.Errorf("stream: %v %q", st.Code(), st.Message())
	}
	if err := grpcerr.Clean(fmt.Errorf("plain")); err.Error() != "plain" {
		t.Errorf("an error without a status changed: %v", err)
	}
}
