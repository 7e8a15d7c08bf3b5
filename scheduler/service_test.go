package scheduler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// farm is a scheduler served over gRPC on loopback, with in-memory storage
// and clients.
type farm struct {
	s     *Scheduler
	srv   *grpc.Server
	addr  string
	cas   *storage.MemoryBlobStore
	ac    *storage.MemoryActionCache
	exec  repb.ExecutionClient
	ops   longrunningpb.OperationsClient
	admin workerpb.AdminServiceClient
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.LeaseDuration = 5 * time.Second
	cfg.ReconnectGrace = time.Second
	cfg.HeartbeatInterval = 100 * time.Millisecond
	cfg.TickInterval = 50 * time.Millisecond
	cfg.MaxRetries = 2
	cfg.ExecutionProperties = []string{"team-label"}
	return cfg
}

// startFarm serves a new scheduler on addr ("" for a free port), sharing
// cas and ac if given.
func startFarm(t *testing.T, cfg Config, addr string, cas *storage.MemoryBlobStore, ac *storage.MemoryActionCache, clock ...Clock) *farm {
	t.Helper()
	if cas == nil {
		cas, ac = storage.NewMemoryBlobStore(), storage.NewMemoryActionCache()
	}
	opts := Options{Config: cfg, BlobStore: cas, ActionCache: ac}
	if len(clock) > 0 {
		opts.Clock = clock[0]
	}
	return startFarmWith(t, opts, addr)
}

// startFarmWith is startFarm with every option given; opts.BlobStore and
// opts.ActionCache must be in-memory stores.
func startFarmWith(t *testing.T, opts Options, addr string) *farm {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cas, ac := opts.BlobStore.(*storage.MemoryBlobStore), opts.ActionCache.(*storage.MemoryActionCache)
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	s.Register(srv)
	go func() { _ = srv.Serve(lis) }() // returns when the farm stops the server
	conn, err := grpc.NewClient("passthrough:///"+lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	f := &farm{s: s, srv: srv, addr: lis.Addr().String(), cas: cas, ac: ac,
		exec: repb.NewExecutionClient(conn), ops: longrunningpb.NewOperationsClient(conn), admin: workerpb.NewAdminServiceClient(conn)}
	t.Cleanup(func() { conn.Close(); f.stop() })
	return f
}

func (f *farm) stop() {
	f.s.Close()
	f.srv.Stop()
}

func (f *farm) put(t *testing.T, m proto.Message) digest.Digest {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	d := digest.FromBytes(repb.DigestFunction_SHA256, b)
	if err := f.cas.Put(context.Background(), d, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	return d
}

// action stores a Command and an Action (empty input root) and returns the
// Action's digest. mod may change either before they are stored.
func (f *farm) action(t *testing.T, salt string, mod func(*repb.Action, *repb.Command)) digest.Digest {
	t.Helper()
	cmd := &repb.Command{Arguments: []string{"/bin/true", salt}, OutputPaths: []string{"out/a"}}
	a := &repb.Action{InputRootDigest: digest.Empty(repb.DigestFunction_SHA256).Proto()}
	if mod != nil {
		mod(a, cmd)
	}
	if a.CommandDigest == nil {
		a.CommandDigest = f.put(t, cmd).Proto()
	}
	return f.put(t, a)
}

func executeRequest(d digest.Digest) *repb.ExecuteRequest {
	return &repb.ExecuteRequest{ActionDigest: d.Proto(), DigestFunction: repb.DigestFunction_SHA256}
}

// collect reads an Execute or WaitExecution stream to its end.
func collect(stream interface {
	Recv() (*longrunningpb.Operation, error)
}) ([]*longrunningpb.Operation, error) {
	var ops []*longrunningpb.Operation
	for {
		op, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return ops, nil
		}
		if err != nil {
			return ops, err
		}
		ops = append(ops, op)
	}
}

func metadataOf(t *testing.T, op *longrunningpb.Operation) *repb.ExecuteOperationMetadata {
	t.Helper()
	md := &repb.ExecuteOperationMetadata{}
	if err := op.Metadata.UnmarshalTo(md); err != nil {
		t.Fatal(err)
	}
	return md
}

func responseOf(t *testing.T, op *longrunningpb.Operation) *repb.ExecuteResponse {
	t.Helper()
	if !op.Done {
		t.Fatalf("operation %s not done", op.Name)
	}
	resp := &repb.ExecuteResponse{}
	if err := op.GetResponse().UnmarshalTo(resp); err != nil {
		t.Fatalf("operation %s has no ExecuteResponse: %v", op.Name, err)
	}
	return resp
}

func ctxTimeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// gate is a run function that blocks until released (or cancelled).
type gate struct{ release chan struct{} }

func newGate() *gate { return &gate{release: make(chan struct{})} }

func (g *gate) run(id string) func(context.Context, *workerpb.Assignment) *repb.ExecuteResponse {
	return func(ctx context.Context, a *workerpb.Assignment) *repb.ExecuteResponse {
		select {
		case <-g.release:
			return &repb.ExecuteResponse{Result: &repb.ActionResult{ExitCode: 3, ExecutionMetadata: &repb.ExecutedActionMetadata{Worker: id}}}
		case <-ctx.Done():
			return nil
		}
	}
}

var linux = &workerpb.Property{Name: "OSFamily", Value: "linux"}

func TestExecuteStreamsStagesAndPassesAssignment(t *testing.T) {
	f := startFarm(t, testConfig(), "", nil, nil)
	ctx := ctxTimeout(t)
	// An REv2 2.0 client: platform in the Command, output_files and
	// output_directories.
	d := f.action(t, "v20", func(a *repb.Action, c *repb.Command) {
		c.OutputPaths = nil
		c.OutputFiles = []string{"out/a.o"}
		c.OutputDirectories = []string{"out/dir"}
		c.Platform = &repb.Platform{Properties: []*repb.Platform_Property{
			{Name: "OSFamily", Value: "linux"}, {Name: "container-image", Value: "docker://gcr.io/x/y:1"}}}
		a.Timeout = durationpb.New(time.Minute)
	})
	md := metadata.Pairs(requestMetadataHeader, string(mustMarshal(t, &repb.RequestMetadata{ToolInvocationId: "inv-1"})))
	stream, err := f.exec.Execute(metadata.NewOutgoingContext(ctx, md), executeRequest(d))
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if st := metadataOf(t, first).Stage; st != repb.ExecutionStage_QUEUED {
		t.Fatalf("first update stage %v with no worker, want QUEUED", st)
	}
	// A worker without OSFamily=linux gets nothing; one with it does.
	other := startTestWorker(t, f.addr, "mac", 1, okRun("mac"), &workerpb.Property{Name: "OSFamily", Value: "macos"})
	other.waitFor(t, "registration", func() bool { return other.connects > 0 })
	g := newGate()
	w := startTestWorker(t, f.addr, "w1", 1, g.run("w1"), linux)
	second, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if m := metadataOf(t, second); m.Stage != repb.ExecutionStage_EXECUTING || m.PartialExecutionMetadata.GetWorker() != "w1" {
		t.Fatalf("second update = stage %v worker %q, want EXECUTING on w1", m.Stage, m.PartialExecutionMetadata.GetWorker())
	}
	close(g.release)
	rest, err := collect(stream)
	if err != nil {
		t.Fatal(err)
	}
	last := rest[len(rest)-1]
	if last.Name != first.Name {
		t.Fatalf("operation renamed from %s to %s", first.Name, last.Name)
	}
	m := metadataOf(t, last)
	if m.Stage != repb.ExecutionStage_COMPLETED || m.ActionDigest.Hash != d.Hash() {
		t.Fatalf("final metadata %v, want COMPLETED for %s", m, d)
	}
	resp := responseOf(t, last)
	if resp.Result.GetExitCode() != 3 || resp.CachedResult || resp.Status.GetCode() != 0 {
		t.Fatalf("response %v, want the worker's result (exit 3), not cached", resp)
	}
	if other.assignedCount() != 0 {
		t.Fatal("action routed to a worker without OSFamily=linux")
	}
	a := w.firstAssigned(t)
	rm := &repb.RequestMetadata{}
	if err := proto.Unmarshal(a.RequestMetadata, rm); err != nil {
		t.Fatalf("assignment's request metadata: %v", err)
	}
	if a.OperationName != first.Name || a.Attempt != 1 || a.ActionDigest.GetHash() != d.Hash() ||
		a.DigestFunction != int32(repb.DigestFunction_SHA256) || a.CommandDigest == nil || a.InputRootDigest == nil ||
		a.Timeout.AsDuration() != time.Minute || a.QueuedTimestamp == nil || len(a.Platform) != 2 ||
		a.Platform[1].Name != "container-image" || rm.ToolInvocationId != "inv-1" {
		t.Fatalf("assignment lacks what the worker needs: %v", a)
	}
}

func TestExecuteAnswersFromActionCache(t *testing.T) {
	f := startFarm(t, testConfig(), "", nil, nil)
	ctx := ctxTimeout(t)
	d := f.action(t, "cached", nil)
	out := f.put(t, &repb.Command{Arguments: []string{"output bytes"}})
	if err := f.ac.Put(ctx, "", d, &repb.ActionResult{ExitCode: 0, OutputFiles: []*repb.OutputFile{{Path: "out/a", Digest: out.Proto()}}}); err != nil {
		t.Fatal(err)
	}
	ops, err := collect(must(f.exec.Execute(ctx, executeRequest(d))))
	if err != nil {
		t.Fatal(err)
	}
	resp := responseOf(t, ops[len(ops)-1])
	if !resp.CachedResult || resp.Result.OutputFiles[0].Digest.Hash != out.Hash() {
		t.Fatalf("response %v, want the cached result", resp)
	}
	// The cache hit is an operation like any other.
	if _, err := f.ops.GetOperation(ctx, &longrunningpb.GetOperationRequest{Name: ops[0].Name}); err != nil {
		t.Fatalf("GetOperation of a cache hit: %v", err)
	}

	// skip_cache_lookup, an incomplete cached result, and an entry for an
	// Action marked do_not_cache (its result cannot be cached, whoever
	// wrote one) all queue.
	req := executeRequest(d)
	req.SkipCacheLookup = true
	d2 := f.action(t, "incomplete", nil)
	if err := f.ac.Put(ctx, "", d2, &repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "out/a", Digest: digest.FromBytes(repb.DigestFunction_SHA256, []byte("gone")).Proto()}}}); err != nil {
		t.Fatal(err)
	}
	d3 := f.action(t, "do not cache", func(a *repb.Action, _ *repb.Command) { a.DoNotCache = true })
	if err := f.ac.Put(ctx, "", d3, &repb.ActionResult{ExitCode: 0, OutputFiles: []*repb.OutputFile{{Path: "out/a", Digest: out.Proto()}}}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*repb.ExecuteRequest{req, executeRequest(d2), executeRequest(d3)} {
		sctx, cancel := context.WithCancel(ctx)
		stream := must(f.exec.Execute(sctx, r))
		op, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if op.Done || metadataOf(t, op).Stage != repb.ExecutionStage_QUEUED {
			t.Fatalf("%v: got %v, want queued", r, op)
		}
		cancel()
	}
}

// An Execute the scheduler would refuse is refused on a cache hit too:
// REv2 says a timeout above the maximum MUST be rejected.
func TestExecuteRefusesABadActionOnACacheHit(t *testing.T) {
	f := startFarm(t, testConfig(), "", nil, nil)
	ctx := ctxTimeout(t)
	out := f.put(t, &repb.Command{Arguments: []string{"output bytes"}})
	for name, edit := range map[string]func(*repb.Action, *repb.Command){
		"action.timeout": func(a *repb.Action, _ *repb.Command) {
			a.Timeout = durationpb.New(testConfig().MaxActionTimeout + time.Hour)
		},
		"command.environment_variables[1]": func(_ *repb.Action, c *repb.Command) {
			c.EnvironmentVariables = []*repb.Command_EnvironmentVariable{{Name: "A", Value: "1"}, {Name: "A", Value: "2"}}
		},
	} {
		d := f.action(t, "hit "+name, edit)
		if err := f.ac.Put(ctx, "", d, &repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "out/a", Digest: out.Proto()}}}); err != nil {
			t.Fatal(err)
		}
		_, err := collect(must(f.exec.Execute(ctx, executeRequest(d))))
		if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), name) {
			t.Errorf("Execute of a cached action with a bad %s: %v, want INVALID_ARGUMENT naming it", name, err)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestWaitExecution(t *testing.T) {
	f := startFarm(t, testConfig(), "", nil, nil)
	ctx := ctxTimeout(t)
	_, err := collect(must(f.exec.WaitExecution(ctx, &repb.WaitExecutionRequest{Name: "operations/unknown"})))
	if status.Code(err) != codes.NotFound {
		t.Fatalf("WaitExecution of an unknown operation: %v, want NOT_FOUND", err)
	}
	d := f.action(t, "wait", nil)
	sctx, cancel := context.WithCancel(ctx)
	first, err := must(f.exec.Execute(sctx, executeRequest(d))).Recv()
	if err != nil {
		t.Fatal(err)
	}
	cancel() // the client goes away; the operation goes on
	startTestWorker(t, f.addr, "w", 1, okRun("w"))
	ops, err := collect(must(f.exec.WaitExecution(ctx, &repb.WaitExecutionRequest{Name: first.Name})))
	if err != nil {
		t.Fatal(err)
	}
	if resp := responseOf(t, ops[len(ops)-1]); resp.Result.GetExecutionMetadata().GetWorker() != "w" {
		t.Fatalf("WaitExecution response %v, want the worker's result", resp)
	}
}

func TestOperationsService(t *testing.T) {
	f := startFarm(t, testConfig(), "", nil, nil)
	ctx := ctxTimeout(t)
	w := startTestWorker(t, f.addr, "w", 1, blockRun)
	w.waitFor(t, "registration", func() bool { return w.connects > 0 })
	start := func(salt, instance string) string {
		req := executeRequest(f.action(t, salt, nil))
		req.InstanceName = instance
		op, err := must(f.exec.Execute(ctx, req)).Recv()
		if err != nil {
			t.Fatal(err)
		}
		return op.Name
	}
	running := start("run", "")
	w.waitFor(t, "the first action", func() bool { return len(w.assigned) == 1 })
	queued := start("queued", "other")

	list := func(filter string) []string {
		resp, err := f.ops.ListOperations(ctx, &longrunningpb.ListOperationsRequest{Filter: filter})
		if err != nil {
			t.Fatalf("ListOperations(%q): %v", filter, err)
		}
		var names []string
		for _, op := range resp.Operations {
			names = append(names, op.Name)
		}
		return names
	}
	if got := list("stage=EXECUTING"); len(got) != 1 || got[0] != running {
		t.Fatalf("stage=EXECUTING lists %v, want [%s]", got, running)
	}
	if got := list(`stage=QUEUED AND instance="other"`); len(got) != 1 || got[0] != queued {
		t.Fatalf("queued in other lists %v, want [%s]", got, queued)
	}
	if got := list("instance=nope"); len(got) != 0 {
		t.Fatalf("instance=nope lists %v", got)
	}
	if _, err := f.ops.ListOperations(ctx, &longrunningpb.ListOperationsRequest{Filter: "colour=red"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad filter: %v, want INVALID_ARGUMENT", err)
	}
	// A bad term is quoted short: a 3 MiB filter was echoed whole.
	for _, bad := range []string{strings.Repeat("a", 1<<20), "stage=" + strings.Repeat("a", 1<<20), strings.Repeat("k", 1<<20) + "=v"} {
		_, err := f.ops.ListOperations(ctx, &longrunningpb.ListOperationsRequest{Filter: bad})
		if st := status.Convert(err); st.Code() != codes.InvalidArgument || len(st.Message()) > 1024 {
			t.Fatalf("a 1 MiB bad filter: %v, %d bytes; want a short INVALID_ARGUMENT", st.Code(), len(st.Message()))
		}
	}

	// WaitOperation with a timeout returns the operation, still running.
	op, err := f.ops.WaitOperation(ctx, &longrunningpb.WaitOperationRequest{Name: running, Timeout: durationpb.New(10 * time.Millisecond)})
	if err != nil || op.Done {
		t.Fatalf("WaitOperation = %v, %v; want the running operation", op, err)
	}

	// CancelOperation kills the action on its worker.
	if _, err := f.ops.CancelOperation(ctx, &longrunningpb.CancelOperationRequest{Name: running}); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, "the cancel", func() bool { return len(w.cancelled) == 1 && w.cancelled[0] == running && !w.c.Holding(running) })
	op, err = f.ops.WaitOperation(ctx, &longrunningpb.WaitOperationRequest{Name: running})
	if err != nil {
		t.Fatal(err)
	}
	if resp := responseOf(t, op); resp.Status.GetCode() != int32(code.Code_CANCELLED) {
		t.Fatalf("cancelled operation's response %v, want CANCELLED", resp)
	}
	got, err := f.ops.GetOperation(ctx, &longrunningpb.GetOperationRequest{Name: queued})
	if err != nil || got.Done {
		t.Fatalf("GetOperation(queued) = %v, %v", got, err)
	}
	if _, err := f.ops.DeleteOperation(ctx, &longrunningpb.DeleteOperationRequest{Name: queued}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ops.GetOperation(ctx, &longrunningpb.GetOperationRequest{Name: queued}); status.Code(err) != codes.NotFound {
		t.Fatalf("GetOperation after delete: %v, want NOT_FOUND", err)
	}
	if _, err := f.ops.CancelOperation(ctx, &longrunningpb.CancelOperationRequest{Name: "operations/nope"}); status.Code(err) != codes.NotFound {
		t.Fatalf("CancelOperation of unknown: %v, want NOT_FOUND", err)
	}
}

func TestDedupOf50ConcurrentExecutes(t *testing.T) {
	f := startFarm(t, testConfig(), "", nil, nil)
	ctx := ctxTimeout(t)
	d := f.action(t, "dedup", nil)
	g := newGate()
	w := startTestWorker(t, f.addr, "w", 8, g.run("w"))
	results := make(chan error, 50)
	names := make(chan string, 50)
	for i := 0; i < 50; i++ {
		go func() {
			ops, err := collect(must(f.exec.Execute(ctx, executeRequest(d))))
			if err == nil {
				names <- ops[0].Name
				if resp := responseOf(t, ops[len(ops)-1]); resp.Result.GetExitCode() != 3 {
					err = errors.New("wrong result")
				}
			}
			results <- err
		}()
	}
	// Release the action once all 50 operations wait for it.
	deadline := time.Now().Add(20 * time.Second)
	for {
		f.s.mu.Lock()
		n := len(f.s.core.ops)
		f.s.mu.Unlock()
		if n == 50 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of 50 operations registered", n)
		}
		time.Sleep(time.Millisecond)
	}
	close(g.release)
	seen := map[string]bool{}
	for i := 0; i < 50; i++ {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
		seen[<-names] = true
	}
	if n := w.assignedCount(); n != 1 {
		t.Fatalf("50 identical Executes ran %d times, want 1", n)
	}
	if len(seen) != 50 {
		t.Fatalf("%d distinct operation names, want 50 (one per client)", len(seen))
	}
}

// startOneSlotWorkerWithTwoActions starts a farm whose one worker, of one
// slot, holds the first of two actions (gated by g) while the second is
// queued.
func startOneSlotWorkerWithTwoActions(t *testing.T) (*farm, context.Context, *gate, *testWorker) {
	f := startFarm(t, testConfig(), "", nil, nil)
	ctx := ctxTimeout(t)
	g := newGate()
	w := startTestWorker(t, f.addr, "w", 1, g.run("w"))
	sctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	must(f.exec.Execute(sctx, executeRequest(f.action(t, "1", nil))))
	must(f.exec.Execute(sctx, executeRequest(f.action(t, "2", nil))))
	w.waitFor(t, "an action", func() bool { return len(w.c.Held()) == 1 })
	return f, ctx, g, w
}

func TestDrainWorkerOverGRPC(t *testing.T) {
	f, ctx, g, w := startOneSlotWorkerWithTwoActions(t)
	resp, err := f.admin.DrainWorker(ctx, &workerpb.DrainWorkerRequest{WorkerId: "w"})
	if err != nil || resp.Idle || resp.Running != 1 {
		t.Fatalf("DrainWorker = %v, %v; want 1 running", resp, err)
	}
	w.waitFor(t, "the drain notice", func() bool { return w.drained })
	waited := make(chan *workerpb.DrainWorkerResponse, 1)
	go func() {
		r, err := f.admin.DrainWorker(ctx, &workerpb.DrainWorkerRequest{WorkerId: "w", Wait: true})
		if err != nil {
			t.Error(err)
		}
		waited <- r
	}()
	close(g.release)
	if r := <-waited; r == nil || !r.Idle {
		t.Fatalf("DrainWorker(wait) = %v, want idle", r)
	}
	if n := w.assignedCount(); n != 1 {
		t.Fatalf("drained worker got %d actions, want 1", n)
	}
	if _, err := f.admin.DrainWorker(ctx, &workerpb.DrainWorkerRequest{WorkerId: "ghost"}); status.Code(err) != codes.NotFound {
		t.Fatalf("draining an unknown worker: %v, want NOT_FOUND", err)
	}
}

func TestUndrainWorkerOverGRPC(t *testing.T) {
	f, ctx, g, w := startOneSlotWorkerWithTwoActions(t)
	if _, err := f.admin.DrainWorker(ctx, &workerpb.DrainWorkerRequest{WorkerId: "w"}); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, "the drain notice", func() bool { return w.c.Draining() })
	waitErr := make(chan error, 1)
	go func() {
		_, err := f.admin.DrainWorker(ctx, &workerpb.DrainWorkerRequest{WorkerId: "w", Wait: true})
		waitErr <- err
	}()
	w.waitFor(t, "the drain call to wait", func() bool {
		f.s.mu.Lock()
		defer f.s.mu.Unlock()
		return len(f.s.drainWaiters["w"]) == 1
	})
	resp, err := f.admin.UndrainWorker(ctx, &workerpb.UndrainWorkerRequest{WorkerId: "w"})
	if err != nil || resp.Running != 1 {
		t.Fatalf("UndrainWorker = %v, %v; want 1 running", resp, err)
	}
	if err := <-waitErr; status.Code(err) != codes.Aborted {
		t.Fatalf("DrainWorker(wait) across an undrain: %v, want ABORTED", err)
	}
	w.waitFor(t, "the undrain notice", func() bool { return !w.c.Draining() })
	close(g.release)
	w.waitFor(t, "the second action on the undrained worker", func() bool { return len(w.assigned) == 2 })
	r, err := f.admin.ListWorkers(ctx, &workerpb.ListWorkersRequest{})
	if err != nil || len(r.Workers) != 1 || r.Workers[0].Draining {
		t.Fatalf("ListWorkers = %v, %v; want one worker, not draining", r, err)
	}
	if _, err := f.admin.UndrainWorker(ctx, &workerpb.UndrainWorkerRequest{WorkerId: "ghost"}); status.Code(err) != codes.NotFound {
		t.Fatalf("undraining an unknown worker: %v, want NOT_FOUND", err)
	}
	if _, err := f.admin.UndrainWorker(ctx, &workerpb.UndrainWorkerRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("undraining worker \"\": %v, want INVALID_ARGUMENT", err)
	}
}

func TestExecuteStreamRepeatsStateWhileIdle(t *testing.T) {
	cfg := testConfig()
	cfg.ExecuteUpdateInterval = 10 * time.Millisecond
	f := startFarm(t, cfg, "", nil, nil)
	stream := must(f.exec.Execute(ctxTimeout(t), executeRequest(f.action(t, "idle", nil))))
	for i := 0; i < 3; i++ {
		op, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if op.Done || metadataOf(t, op).Stage != repb.ExecutionStage_QUEUED {
			t.Fatalf("update %d: %v, want the unchanged QUEUED state", i, op)
		}
	}
}

// Every queued action keeps its RequestMetadata until it runs: a header
// larger than a client needs (gRPC allows a megabyte) is refused at
// Execute, naming it, and nothing is queued.
func TestOversizedRequestMetadataIsRefused(t *testing.T) {
	f := startFarm(t, testConfig(), "", nil, nil)
	ctx := ctxTimeout(t)
	d := f.action(t, "big-metadata", nil)
	rm := &repb.RequestMetadata{ToolInvocationId: "inv", ActionMnemonic: strings.Repeat("m", 32<<10)}
	md := metadata.Pairs(requestMetadataHeader, string(mustMarshal(t, rm)))
	stream, err := f.exec.Execute(metadata.NewOutgoingContext(ctx, md), executeRequest(d))
	if err == nil {
		_, err = stream.Recv()
	}
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), requestMetadataHeader) {
		t.Fatalf("Execute with %d bytes of request metadata: %v; want INVALID_ARGUMENT naming the header", proto.Size(rm), err)
	}
	if ops, _ := f.s.Operations(OperationFilter{}); len(ops) != 0 {
		t.Fatalf("%d operations after a refused Execute", len(ops))
	}
	// A usual one is accepted.
	rm.ActionMnemonic = "CppCompile"
	md = metadata.Pairs(requestMetadataHeader, string(mustMarshal(t, rm)))
	stream, err = f.exec.Execute(metadata.NewOutgoingContext(ctx, md), executeRequest(d))
	if err == nil {
		_, err = stream.Recv()
	}
	if err != nil {
		t.Fatalf("Execute with usual request metadata: %v", err)
	}
}

// TestPriorityOutsideTheAdvertisedRangeIsClamped: Capabilities advertise
// priorities MinPriority..MaxPriority; one outside is taken as the
// nearest end, so a client cannot order its actions by a range nobody
// advertised (MinInt32 ahead of everything the range allows).
func TestPriorityOutsideTheAdvertisedRangeIsClamped(t *testing.T) {
	f := startFarm(t, testConfig(), "", nil, nil)
	ctx := ctxTimeout(t)
	for i, tc := range []struct{ asked, want int32 }{{5000, MaxPriority}, {math.MinInt32, MinPriority}, {-7, -7}} {
		req := executeRequest(f.action(t, fmt.Sprint("priority ", i), nil))
		req.ExecutionPolicy = &repb.ExecutionPolicy{Priority: tc.asked}
		sctx, cancel := context.WithCancel(ctx)
		op, err := must(f.exec.Execute(sctx, req)).Recv()
		if err != nil {
			t.Fatal(err)
		}
		f.s.mu.Lock()
		got := f.s.core.ops[op.Name].exec.priority
		f.s.mu.Unlock()
		cancel()
		if got != tc.want {
			t.Errorf("priority %d queued as %d, want %d", tc.asked, got, tc.want)
		}
	}
}
