package scheduler

import (
	"context"
	"sync"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/api/workerpb/workerclient"
)

// testWorker is a worker built on workerclient, as a real one will be, that
// records what the scheduler told it. run stands in for fetching inputs and
// running the command.
type testWorker struct {
	id string
	c  *workerclient.Client

	mu        sync.Mutex
	assigned  []*workerpb.Assignment // every assignment received
	cancelled []string
	drained   bool
	connects  int
}

func startTestWorker(t *testing.T, addr, id string, concurrency int, run workerclient.Handler, platform ...*workerpb.Property) *testWorker {
	t.Helper()
	w, stop := runTestWorker(addr, id, concurrency, run, platform...)
	t.Cleanup(stop)
	return w
}

// fastReconnect makes a test client reconnect within tens of milliseconds
// of its server coming back, instead of gRPC's default backoff of seconds.
var fastReconnect = grpc.WithConnectParams(grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: 10 * time.Millisecond, Multiplier: 1.5, MaxDelay: 100 * time.Millisecond},
	MinConnectTimeout: time.Second,
})

// runTestWorker starts a worker; stop ends it.
func runTestWorker(addr, id string, concurrency int, run workerclient.Handler, platform ...*workerpb.Property) (w *testWorker, stop func()) {
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()), fastReconnect)
	if err != nil {
		panic(err)
	}
	w = &testWorker{id: id}
	w.c, err = workerclient.New(workerclient.Options{
		Conn:           conn,
		Register:       &workerpb.Register{WorkerId: id, Concurrency: int32(concurrency), Platform: platform},
		Handler:        run,
		ReconnectDelay: 20 * time.Millisecond,
		OnMessage:      w.record,
	})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = w.c.Run(ctx) // returns ctx's error once stopped
	}()
	return w, func() { cancel(); <-done; conn.Close() }
}

func (w *testWorker) record(m *workerpb.SchedulerMessage) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch k := m.Kind.(type) {
	case *workerpb.SchedulerMessage_Registered:
		w.connects++
	case *workerpb.SchedulerMessage_Assignment:
		w.assigned = append(w.assigned, k.Assignment)
	case *workerpb.SchedulerMessage_Cancel:
		w.cancelled = append(w.cancelled, k.Cancel.OperationName)
	case *workerpb.SchedulerMessage_Drain:
		w.drained = true
	}
}

// waitFor polls cond (under w.mu) until it holds or a deadline passes.
func (w *testWorker) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		w.mu.Lock()
		ok := cond()
		w.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker %s: timed out waiting for %s", w.id, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// firstAssigned returns the first assignment the worker recorded,
// waiting for it: the client records a message after acting on it
// (OnMessage), so the action may be done, its result delivered, before
// its assignment is recorded.
func (w *testWorker) firstAssigned(t *testing.T) *workerpb.Assignment {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); w.assignedCount() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no assignment was recorded")
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.assigned[0]
}

func (w *testWorker) assignedCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.assigned)
}

// okRun completes every action at once with exit code 0 and the worker's id
// in the metadata.
func okRun(id string) workerclient.Handler {
	return func(ctx context.Context, a *workerpb.Assignment) *repb.ExecuteResponse {
		return &repb.ExecuteResponse{Result: &repb.ActionResult{ExecutionMetadata: &repb.ExecutedActionMetadata{Worker: id}}}
	}
}

// blockRun runs until cancelled.
func blockRun(ctx context.Context, a *workerpb.Assignment) *repb.ExecuteResponse {
	<-ctx.Done()
	return nil
}
