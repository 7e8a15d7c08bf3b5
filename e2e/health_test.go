package e2e

import (
	"context"
	"path/filepath"
	"regexp"
	"testing"

	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/paddock-build/paddock/internal/grpctest"
)

// TestWorkerHealthFollowsRunner: a worker's gRPC health (served on its
// --http-listen port) is SERVING while its runner is ready and its
// scheduler connected, NOT_SERVING while the runner is down, and SERVING
// again once the runner is back. The scheduler's gRPC listener serves
// health and reflection too.
func TestWorkerHealthFollowsRunner(t *testing.T) {
	needPaddock(t)
	rs := newRoles(t)
	var httpAddr string
	rs.worker, httpAddr = startProcess(t, "worker-h1", regexp.MustCompile(`^paddock worker http listening on (\S+)`),
		"worker", "--id", "h1", "--scheduler", rs.schedAddr, "--storage", rs.storageAddr, "--runner", rs.sock,
		"--dir", rs.workDir, "--http-listen", "127.0.0.1:0", "--log-format", "json")

	ctx, cancel := context.WithTimeout(t.Context(), faultLimit)
	defer cancel()
	watch, err := grpc_health_v1.NewHealthClient(grpctest.Dial(t, httpAddr)).Watch(ctx, &grpc_health_v1.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	waitStatus := func(want grpc_health_v1.HealthCheckResponse_ServingStatus) {
		t.Helper()
		for {
			resp, err := watch.Recv()
			if err != nil {
				t.Fatalf("waiting for the worker's health to be %v: %v", want, err)
			}
			if resp.Status == want {
				return
			}
		}
	}
	waitStatus(grpc_health_v1.HealthCheckResponse_SERVING)
	rs.runner.kill()
	waitStatus(grpc_health_v1.HealthCheckResponse_NOT_SERVING)
	rs.runner, _ = startProcess(t, "runner", regexp.MustCompile(`^paddock runner listening on (\S+)`),
		"runner", "--socket", rs.sock, "--state", filepath.Join(rs.dir, "runner"), "--hide", rs.workDir)
	waitStatus(grpc_health_v1.HealthCheckResponse_SERVING)

	// The scheduler's listener: health, and reflection naming its services.
	sconn := grpctest.Dial(t, rs.schedAddr)
	if resp, err := grpc_health_v1.NewHealthClient(sconn).Check(ctx, &grpc_health_v1.HealthCheckRequest{}); err != nil || resp.Status != grpc_health_v1.HealthCheckResponse_SERVING {
		t.Errorf("scheduler health: %v %v, want SERVING", resp, err)
	}
	rc, err := grpc_reflection_v1.NewServerReflectionClient(sconn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Send(&grpc_reflection_v1.ServerReflectionRequest{MessageRequest: &grpc_reflection_v1.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatalf("sending the reflection request: %v", err)
	}
	resp, err := rc.Recv()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range resp.GetListServicesResponse().GetService() {
		found = found || s.Name == "build.bazel.remote.execution.v2.Execution"
	}
	if !found {
		t.Errorf("the scheduler's reflection lists %v, want the Execution service among them", resp.GetListServicesResponse().GetService())
	}
	rs.stop()
}
