package worker_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/api/runnerpb"
	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/internal/farmtest"
	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/scheduler"
	"github.com/paddock-build/paddock/worker"
)

// probeRunner answers CheckReadiness while up is set, as a runner process
// that is running.
type probeRunner struct {
	runnerpb.RunnerClient
	up     *atomic.Bool
	probes *atomic.Int64 // counts the calls, if set
}

func (p probeRunner) CheckReadiness(context.Context, *runnerpb.CheckReadinessRequest, ...grpc.CallOption) (*runnerpb.CheckReadinessResponse, error) {
	if p.probes != nil {
		p.probes.Add(1)
	}
	if !p.up.Load() {
		return nil, status.Error(codes.Unavailable, "connection refused")
	}
	return &runnerpb.CheckReadinessResponse{TakesActionDir: true}, nil
}

// deadRunner runs commands while up is set, and otherwise fails as a
// worker's runner client does when its runner is gone, counting those.
type deadRunner struct {
	exec     farmtest.ExecRunner
	up       *atomic.Bool
	failures atomic.Int64
}

func (r *deadRunner) Run(ctx context.Context, req *runnerpb.RunRequest) (*runnerpb.RunResponse, error) {
	if !r.up.Load() {
		r.failures.Add(1)
		return nil, status.Error(codes.Unavailable, "runner not ready: connection refused")
	}
	return r.exec.Run(ctx, req)
}

// pollWorker polls ListWorkers until cond holds for the worker id.
func pollWorker(t *testing.T, admin workerpb.AdminServiceClient, id, what string, cond func(*workerpb.WorkerInfo) bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		resp, err := admin.ListWorkers(context.Background(), &workerpb.ListWorkersRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range resp.Workers {
			if w.WorkerId == id && cond(w) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker %s: never %s (%v)", id, what, resp.Workers)
		}
	}
}

// servedScheduler serves a scheduler over h's stores on loopback and
// returns a connection to it.
func servedScheduler(t *testing.T, h *harness) *grpc.ClientConn {
	t.Helper()
	s, err := scheduler.New(scheduler.Options{Config: scheduler.DefaultConfig(), BlobStore: h.cas, ActionCache: h.ac, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return grpctest.Dial(t, "passthrough:///"+grpctest.Listen(t, s.Register))
}

// TestWorkerWithItsRunnerDownTakesNoWork: a worker whose runner is down
// is paused (Readiness with Worker): the scheduler gives it nothing, and
// an action waits for it instead of failing on it max_retries+1 times.
// When the runner is back the worker resumes, runs the action, and is
// ready (registered, runner up).
func TestWorkerWithItsRunnerDownTakesNoWork(t *testing.T) {
	h := newHarness(t)
	conn := servedScheduler(t, h)
	up := &atomic.Bool{}
	runner := &deadRunner{up: up}
	w, err := worker.New(worker.Options{ID: "w1", CAS: h.cas, AC: h.ac, Files: h.files, Runner: runner, BuildDir: filepath.Join(h.dir, "builds2")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ready := make(chan bool, 10)
	go worker.Readiness{Runner: probeRunner{up: up}, Scheduler: conn, Worker: w, Interval: 10 * time.Millisecond}.Run(ctx, func(r bool, _ string) { ready <- r })
	defer farmtest.RunWorker(t, ctx, w, conn)()
	admin := workerpb.NewAdminServiceClient(conn)
	pollWorker(t, admin, "w1", "paused", func(i *workerpb.WorkerInfo) bool { return i.Connected && i.Paused })

	a := h.action(&repb.Command{Arguments: []string{"/bin/echo", "ran"}}, &repb.Directory{}, true)
	stream, err := repb.NewExecutionClient(conn).Execute(ctx, &repb.ExecuteRequest{InstanceName: a.InstanceName, ActionDigest: actionDigest(a).Proto(), DigestFunction: sha256})
	if err != nil {
		t.Fatal(err)
	}
	op, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	md := &repb.ExecuteOperationMetadata{}
	if err := op.Metadata.UnmarshalTo(md); err != nil || op.Done || md.Stage != repb.ExecutionStage_QUEUED {
		t.Fatalf("with the only worker paused the action is %v (done %v), want QUEUED", md.Stage, op.Done)
	}
	up.Store(true)
	pollWorker(t, admin, "w1", "resumed", func(i *workerpb.WorkerInfo) bool { return !i.Paused })
	for !op.Done {
		if op, err = stream.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	resp := &repb.ExecuteResponse{}
	if err := op.GetResponse().UnmarshalTo(resp); err != nil {
		t.Fatal(err)
	}
	if res := ok(t, resp); string(h.read(res.StdoutDigest)) != "ran\n" || runner.failures.Load() != 0 {
		t.Fatalf("stdout %q after %d runs on the dead runner, want \"ran\" and none", h.read(res.StdoutDigest), runner.failures.Load())
	}
	for r := false; !r; {
		select {
		case r = <-ready:
		case <-ctx.Done():
			t.Fatal("the worker never became ready")
		}
	}
}

// A worker started paused registers paused, and is given nothing until
// resumed, even with an action queued for it already: the worker role
// registered unpaused before its first readiness probe, and, beside a
// runner too old for it, failed the action it was given at once INTERNAL
// (outside probe).
func TestWorkerStartedPausedTakesNoWork(t *testing.T) {
	h := newHarness(t)
	conn := servedScheduler(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := h.action(&repb.Command{Arguments: []string{"/bin/echo", "ran"}}, &repb.Directory{}, true)
	stream, err := repb.NewExecutionClient(conn).Execute(ctx, &repb.ExecuteRequest{InstanceName: a.InstanceName, ActionDigest: actionDigest(a).Proto(), DigestFunction: sha256})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	runner := &deadRunner{up: &atomic.Bool{}}
	w, err := worker.New(worker.Options{ID: "w1", CAS: h.cas, AC: h.ac, Files: h.files, Runner: runner, BuildDir: filepath.Join(h.dir, "builds2"), StartPaused: true})
	if err != nil {
		t.Fatal(err)
	}
	defer farmtest.RunWorker(t, ctx, w, conn)()
	admin := workerpb.NewAdminServiceClient(conn)
	pollWorker(t, admin, "w1", "connected and paused", func(i *workerpb.WorkerInfo) bool { return i.Connected && i.Paused })
	if n := runner.failures.Load(); n != 0 {
		t.Fatalf("the paused worker ran the queued action %d times", n)
	}
}
