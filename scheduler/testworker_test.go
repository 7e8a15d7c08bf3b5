package scheduler

import (
	"context"
	"sync"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/api/workerpb"
)

// testWorker speaks the worker protocol over gRPC the way a real worker
// should: register (listing actions in hand), heartbeat, run assignments
// concurrently, report results, obey Cancel, and reconnect on its own when
// the stream breaks. run stands in for fetching inputs and running the
// command; it must return when its ctx is cancelled.
type testWorker struct {
	id          string
	concurrency int
	platform    []*workerpb.Property
	run         func(ctx context.Context, a *workerpb.Assignment) *repb.ExecuteResponse

	mu        sync.Mutex
	stream    workerpb.WorkerService_ConnectClient
	inHand    map[string]*heldAction
	assigned  []*workerpb.Assignment // every assignment received
	cancelled []string
	drained   bool
	connects  int
	changed   chan struct{} // closed and replaced on every change
}

type heldAction struct {
	attempt int32
	cancel  context.CancelFunc
	result  *workerpb.Result // set once run returned, until sent
}

func startTestWorker(t *testing.T, addr, id string, concurrency int, run func(context.Context, *workerpb.Assignment) *repb.ExecuteResponse, platform ...*workerpb.Property) *testWorker {
	t.Helper()
	w, stop := runTestWorker(addr, id, concurrency, run, platform...)
	t.Cleanup(stop)
	return w
}

// runTestWorker starts a worker; stop ends it.
func runTestWorker(addr, id string, concurrency int, run func(context.Context, *workerpb.Assignment) *repb.ExecuteResponse, platform ...*workerpb.Property) (w *testWorker, stop func()) {
	w = &testWorker{id: id, concurrency: concurrency, run: run, platform: platform, inHand: map[string]*heldAction{}, changed: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.loop(ctx, addr)
	}()
	return w, func() { cancel(); <-done }
}

func (w *testWorker) notify() {
	close(w.changed)
	w.changed = make(chan struct{})
}

// waitFor polls cond (under w.mu) at every change until it holds or the
// deadline passes.
func (w *testWorker) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		w.mu.Lock()
		ok, ch := cond(), w.changed
		w.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("worker %s: timed out waiting for %s", w.id, what)
		}
	}
}

func (w *testWorker) loop(ctx context.Context, addr string) {
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	client := workerpb.NewWorkerServiceClient(conn)
	for ctx.Err() == nil {
		w.session(ctx, client)
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond): // reconnect backoff
		}
	}
	w.mu.Lock()
	for _, h := range w.inHand {
		h.cancel()
	}
	w.mu.Unlock()
}

// session runs one stream until it breaks.
func (w *testWorker) session(ctx context.Context, client workerpb.WorkerServiceClient) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.Connect(sctx, grpc.WaitForReady(true))
	if err != nil {
		return
	}
	reg := &workerpb.Register{WorkerId: w.id, Concurrency: int32(w.concurrency), Platform: w.platform}
	w.mu.Lock()
	for name, h := range w.inHand {
		reg.Running = append(reg.Running, &workerpb.InHand{OperationName: name, Attempt: h.attempt})
	}
	w.mu.Unlock()
	if err := stream.Send(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Register{Register: reg}}); err != nil {
		return
	}
	first, err := stream.Recv()
	if err != nil || first.GetRegistered() == nil {
		return
	}
	w.mu.Lock()
	w.stream = stream
	w.connects++
	// Results finished while disconnected go out now.
	for _, h := range w.inHand {
		if h.result != nil {
			w.sendLocked(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Result{Result: h.result}})
		}
	}
	w.notify()
	w.mu.Unlock()
	go func() {
		t := time.NewTicker(first.GetRegistered().HeartbeatInterval.AsDuration())
		defer t.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-t.C:
				w.mu.Lock()
				w.sendLocked(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Heartbeat{Heartbeat: &workerpb.Heartbeat{}}})
				w.mu.Unlock()
			}
		}
	}()
	for {
		m, err := stream.Recv()
		if err != nil {
			w.mu.Lock()
			w.stream = nil
			w.notify()
			w.mu.Unlock()
			return
		}
		w.mu.Lock()
		switch k := m.Kind.(type) {
		case *workerpb.SchedulerMessage_Assignment:
			a := k.Assignment
			actx, acancel := context.WithCancel(ctx)
			w.inHand[a.OperationName] = &heldAction{attempt: a.Attempt, cancel: acancel}
			w.assigned = append(w.assigned, a)
			go w.execute(actx, a)
		case *workerpb.SchedulerMessage_Cancel:
			w.cancelled = append(w.cancelled, k.Cancel.OperationName)
			if h := w.inHand[k.Cancel.OperationName]; h != nil {
				h.cancel()
			}
		case *workerpb.SchedulerMessage_Drain:
			w.drained = true
		}
		w.notify()
		w.mu.Unlock()
	}
}

func (w *testWorker) execute(ctx context.Context, a *workerpb.Assignment) {
	resp := w.run(ctx, a)
	if ctx.Err() != nil && resp == nil {
		resp = &repb.ExecuteResponse{Status: &rpcstatus.Status{Code: int32(code.Code_CANCELLED), Message: "killed"}}
	}
	b, _ := proto.Marshal(resp)
	w.mu.Lock()
	defer w.mu.Unlock()
	h := w.inHand[a.OperationName]
	if h == nil || h.attempt != a.Attempt {
		return
	}
	h.result = &workerpb.Result{OperationName: a.OperationName, Attempt: a.Attempt, ExecuteResponse: b}
	w.sendLocked(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Result{Result: h.result}})
	w.notify()
}

// sendLocked sends on the current stream; a result is forgotten once sent
// (if the stream broke, it is sent again after the reconnect).
func (w *testWorker) sendLocked(m *workerpb.WorkerMessage) {
	if w.stream == nil {
		return
	}
	if w.stream.Send(m) != nil {
		return
	}
	if r := m.GetResult(); r != nil {
		delete(w.inHand, r.OperationName)
	}
}

func (w *testWorker) assignedCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.assigned)
}

// okRun completes every action at once with exit code 0 and the worker's id
// in the metadata.
func okRun(id string) func(context.Context, *workerpb.Assignment) *repb.ExecuteResponse {
	return func(ctx context.Context, a *workerpb.Assignment) *repb.ExecuteResponse {
		return &repb.ExecuteResponse{Result: &repb.ActionResult{ExecutionMetadata: &repb.ExecutedActionMetadata{Worker: id}}}
	}
}

// blockRun runs until cancelled.
func blockRun(ctx context.Context, a *workerpb.Assignment) *repb.ExecuteResponse {
	<-ctx.Done()
	return nil
}
