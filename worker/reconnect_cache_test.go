package worker_test

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/api/runnerpb"
	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/api/workerpb/workerclient"
	"github.com/paddock-build/paddock/internal/clock"
	"github.com/paddock-build/paddock/internal/farmtest"
	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/internal/testlog"
	"github.com/paddock-build/paddock/scheduler"
	"github.com/paddock-build/paddock/worker"
)

// gatedRunner runs each command once open is closed, and says when a run
// has started and when it has returned.
type gatedRunner struct {
	exec    farmtest.ExecRunner
	open    chan struct{}
	started chan struct{}
	ran     chan struct{}
}

func newGatedRunner() *gatedRunner {
	return &gatedRunner{open: make(chan struct{}), started: make(chan struct{}, 10), ran: make(chan struct{}, 10)}
}

func (r *gatedRunner) Run(ctx context.Context, req *runnerpb.RunRequest) (*runnerpb.RunResponse, error) {
	r.started <- struct{}{}
	defer func() { r.ran <- struct{}{} }()
	select {
	case <-r.open:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return r.exec.Run(ctx, req)
}

// reconnectFarm is a scheduler on a fake clock, serving on loopback, and
// worker w1, which reaches it through proxy and runs actions on runner.
type reconnectFarm struct {
	h      *harness
	s      *scheduler.Scheduler
	clock  *clock.Fake
	logs   *testlog.Buffer
	conn   *grpc.ClientConn // straight to the scheduler: clients, other workers
	admin  workerpb.AdminServiceClient
	proxy  *cutProxy
	runner *gatedRunner
	w1     *worker.Worker
}

func startReconnectFarm(t *testing.T) *reconnectFarm {
	t.Helper()
	f := &reconnectFarm{h: newHarness(t), clock: clock.NewFake(time.Unix(1e9, 0)), logs: &testlog.Buffer{}, runner: newGatedRunner()}
	var err error
	f.s, err = scheduler.New(scheduler.Options{Config: scheduler.DefaultConfig(), BlobStore: f.h.cas, ActionCache: f.h.ac,
		Clock: f.clock, Logger: slog.New(slog.NewTextHandler(f.logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.s.Close)
	addr := grpctest.Listen(t, f.s.Register)
	f.conn = grpctest.Dial(t, "passthrough:///"+addr)
	f.admin = workerpb.NewAdminServiceClient(f.conn)
	f.proxy = newCutProxy(t, addr)
	f.w1 = startWorker(t, f.h, "w1", grpctest.Dial(t, "passthrough:///"+f.proxy.addr, workerclient.DialOptions()...), f.runner)
	pollWorker(t, f.admin, "w1", "connected", func(i *workerpb.WorkerInfo) bool { return i.Connected })
	return f
}

// startWorker runs a worker on h's storage until the test ends.
func startWorker(t *testing.T, h *harness, id string, conn *grpc.ClientConn, runner worker.Runner) *worker.Worker {
	t.Helper()
	w, err := worker.New(worker.Options{ID: id, CAS: h.cas, AC: h.ac, Files: h.files, Runner: runner,
		BuildDir: filepath.Join(h.dir, "builds-"+id)})
	if err != nil {
		t.Fatal(err)
	}
	stop := farmtest.RunWorker(t, context.Background(), w, conn)
	t.Cleanup(func() { stop(); w.Close() })
	return w
}

// execute submits an action whose every run prints something new, and
// returns it, its operation's name and the stream that will carry its
// result, once w1 has started running it.
func (f *reconnectFarm) execute(t *testing.T) (*workerpb.Assignment, string, repb.Execution_ExecuteClient) {
	t.Helper()
	return execute(t, f.h, f.conn, f.runner)
}

// execute is reconnectFarm.execute for a farm that h stores for, whose
// scheduler conn reaches, and whose worker runs actions on runner.
func execute(t *testing.T, h *harness, conn *grpc.ClientConn, runner *gatedRunner) (*workerpb.Assignment, string, repb.Execution_ExecuteClient) {
	t.Helper()
	a := h.action(sh("cat /proc/sys/kernel/random/uuid"), &repb.Directory{}, false)
	stream, err := repb.NewExecutionClient(conn).Execute(context.Background(), &repb.ExecuteRequest{
		InstanceName: a.InstanceName, ActionDigest: actionDigest(a).Proto(), DigestFunction: sha256})
	if err != nil {
		t.Fatal(err)
	}
	op, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	wait(t, runner.started, "the worker to start the action")
	return a, op.Name, stream
}

// disconnect cuts w1 off the scheduler, and keeps it off, until both have
// seen the session end.
func (f *reconnectFarm) disconnect(t *testing.T) {
	t.Helper()
	f.proxy.cut()
	pollWorker(t, f.admin, "w1", "disconnected", func(i *workerpb.WorkerInfo) bool { return !i.Connected })
	waitUnregistered(t, f.w1)
}

// waitUnregistered polls until w has seen its session end.
func waitUnregistered(t *testing.T, w *worker.Worker) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); w.Registered(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the worker never saw its session end")
		}
	}
}

// cached is the action cache's entry for a, or nil.
func cached(t *testing.T, h *harness, a *workerpb.Assignment) *repb.ActionResult {
	t.Helper()
	res, err := h.ac.Get(context.Background(), a.InstanceName, actionDigest(a))
	if status.Code(err) == codes.NotFound {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func wait(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(20 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// response reads stream to its end and returns the action's result.
func response(t *testing.T, stream repb.Execution_ExecuteClient) *repb.ActionResult {
	t.Helper()
	for {
		op, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if op.Done {
			resp := &repb.ExecuteResponse{}
			if err := op.GetResponse().UnmarshalTo(resp); err != nil {
				t.Fatal(err)
			}
			return ok(t, resp)
		}
	}
}

// TestActionKeptAcrossAReconnectIsCached: an action that finishes while
// its worker's connection to the scheduler is down, and that the scheduler
// keeps on that worker when it reconnects, is delivered and written to the
// action cache, with what the client got. The worker used to skip the
// write for every action whose session had ended, so every action that
// crossed a reconnect (a network blip, a scheduler restart) ran again on
// every clean build.
func TestActionKeptAcrossAReconnectIsCached(t *testing.T) {
	f := startReconnectFarm(t)
	a, _, stream := f.execute(t)
	f.disconnect(t)
	close(f.runner.open)
	wait(t, f.runner.ran, "the run to return")
	f.proxy.resume()
	got := response(t, stream)
	checkCached(t, f.h, a, got, f.runner)
}

// checkCached fails the test unless the action cache holds, for a, the
// result the client got, from the one run on runner.
func checkCached(t *testing.T, h *harness, a *workerpb.Assignment, got *repb.ActionResult, runner *gatedRunner) {
	t.Helper()
	res := cached(t, h, a)
	if res == nil {
		t.Fatal("the result of an action the scheduler kept across the reconnect is not in the action cache")
	}
	if !proto.Equal(res.StdoutDigest, got.StdoutDigest) || runner.exec.Calls() != 1 {
		t.Fatalf("cached stdout %v, the client's %v, after %d runs; want the one run's", res.StdoutDigest, got.StdoutDigest, runner.exec.Calls())
	}
}

// TestActionAcrossASchedulerRestartIsCached: as above, across a restart of
// the scheduler from its journal (the reconnect the tester found first:
// every action running at the restart was delivered but never cached).
func TestActionAcrossASchedulerRestartIsCached(t *testing.T) {
	h := newHarness(t)
	cfg := scheduler.DefaultConfig()
	cfg.JournalDir = t.TempDir()
	serve := func(addr string) (*scheduler.Scheduler, *grpc.Server, string) {
		s, err := scheduler.New(scheduler.Options{Config: cfg, BlobStore: h.cas, ActionCache: h.ac, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		lis, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		return s, grpctest.Start(t, lis, s.Register), lis.Addr().String()
	}
	first, srv, addr := serve("127.0.0.1:0")
	conn := grpctest.Dial(t, "passthrough:///"+addr, workerclient.DialOptions()...)
	runner := newGatedRunner()
	w := startWorker(t, h, "w1", conn, runner)
	a, name, _ := execute(t, h, conn, runner)
	srv.Stop()
	first.Close()
	waitUnregistered(t, w)
	close(runner.open)
	wait(t, runner.ran, "the run to return")
	serve(addr)
	stream, err := repb.NewExecutionClient(conn).WaitExecution(context.Background(), &repb.WaitExecutionRequest{Name: name}, grpc.WaitForReady(true))
	if err != nil {
		t.Fatal(err)
	}
	checkCached(t, h, a, response(t, stream), runner)
}

// TestActionRequeuedMeanwhileIsNotCachedByTheOldWorker: while w1 is away
// past reconnect_grace, the scheduler gives its action to w2, whose result
// the client gets and the cache holds. w1's own run, finished meanwhile,
// is not kept when w1 reconnects, and must not replace that entry.
func TestActionRequeuedMeanwhileIsNotCachedByTheOldWorker(t *testing.T) {
	f := startReconnectFarm(t)
	a, _, stream := f.execute(t)
	f.disconnect(t)
	f.clock.Advance(scheduler.DefaultConfig().ReconnectGrace)
	f.s.Tick() // w1 is lost: its action is requeued
	startWorker(t, f.h, "w2", f.conn, &farmtest.ExecRunner{})
	got := response(t, stream)
	close(f.runner.open)
	wait(t, f.runner.ran, "w1's run to return")
	f.proxy.resume()
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(f.logs.String(), "stale action result ignored"); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("w1's result never reached the scheduler; its log:\n%s", f.logs.String())
		}
	}
	if cached := cached(t, f.h, a); cached == nil || !proto.Equal(cached.StdoutDigest, got.StdoutDigest) {
		t.Fatalf("cached %v; want w2's result, which the client got (stdout %v)", cached, got.StdoutDigest)
	}
}

// TestActionCancelledMeanwhileIsNotCached: an action cancelled while its
// worker is away is not kept when the worker reconnects; its run, finished
// meanwhile, is reported to free the slot but not cached.
func TestActionCancelledMeanwhileIsNotCached(t *testing.T) {
	f := startReconnectFarm(t)
	a, name, _ := f.execute(t)
	f.disconnect(t)
	if _, err := longrunningpb.NewOperationsClient(f.conn).CancelOperation(context.Background(), &longrunningpb.CancelOperationRequest{Name: name}); err != nil {
		t.Fatal(err)
	}
	close(f.runner.open)
	wait(t, f.runner.ran, "the run to return")
	f.proxy.resume()
	pollWorker(t, f.admin, "w1", "back, with its slot freed", func(i *workerpb.WorkerInfo) bool { return i.Connected && i.Running == 0 })
	if cached := cached(t, f.h, a); cached != nil {
		t.Fatalf("a cancelled action's run was cached: %v", cached)
	}
}
