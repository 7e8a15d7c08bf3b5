package workerclient

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/internal/grpctest"
)

// scriptedScheduler hands each Connect stream to the test.
type scriptedScheduler struct {
	workerpb.UnimplementedWorkerServiceServer
	streams chan workerpb.WorkerService_ConnectServer
}

func (s *scriptedScheduler) Connect(stream workerpb.WorkerService_ConnectServer) error {
	done := make(chan struct{})
	s.streams <- &endingStream{stream, done}
	<-done
	return nil
}

// endingStream lets the test end a server stream by calling end.
type endingStream struct {
	workerpb.WorkerService_ConnectServer
	done chan struct{}
}

func (e *endingStream) end() { close(e.done) }

// scriptedRun is a client running against a scriptedScheduler on
// loopback, registered as worker w with one slot.
type scriptedRun struct {
	sched  *scriptedScheduler
	c      *Client
	cancel context.CancelFunc
	done   chan error
}

// runScripted starts a client with handler h; its Run ends with stop, or
// 30 seconds at the latest.
func runScripted(t *testing.T, h Handler) *scriptedRun {
	sched := &scriptedScheduler{streams: make(chan workerpb.WorkerService_ConnectServer)}
	addr := grpctest.Listen(t, func(g *grpc.Server) { workerpb.RegisterWorkerServiceServer(g, sched) })
	c, err := New(Options{
		Conn:           grpctest.Dial(t, "passthrough:///"+addr),
		Register:       &workerpb.Register{WorkerId: "w", Concurrency: 1},
		ReconnectDelay: time.Millisecond,
		Handler:        h,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	r := &scriptedRun{sched: sched, c: c, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx) }()
	return r
}

// stop cancels Run, ends the stream the scheduler holds, last, and waits
// for Run to return.
func (r *scriptedRun) stop(last workerpb.WorkerService_ConnectServer) {
	r.cancel()
	last.(*endingStream).end()
	<-r.done
}

// recvRegister reads a stream's first message, which must be a Register.
func recvRegister(t *testing.T, s workerpb.WorkerService_ConnectServer) *workerpb.Register {
	t.Helper()
	m, err := s.Recv()
	if err != nil || m.GetRegister() == nil {
		t.Fatalf("first message %v, %v; want register", m, err)
	}
	return m.GetRegister()
}

// send sends m to the worker on s, failing the test if it cannot.
func send(t *testing.T, s workerpb.WorkerService_ConnectServer, m *workerpb.SchedulerMessage) {
	t.Helper()
	if err := s.Send(m); err != nil {
		t.Fatalf("sending %v: %v", m, err)
	}
}

// TestResultFinishedWhileDisconnectedIsSentAfterReRegister: an action
// that finishes after its session broke is listed as held at the next
// Register and its result sent once registered. Its handler, asking
// between sessions whether the action is still this worker's
// (StillAssigned), gets the next session's answer: yes if Registered
// names it as kept, no if not (as from a scheduler that gave it to
// another worker, or one that predates Registered.kept).
func TestResultFinishedWhileDisconnectedIsSentAfterReRegister(t *testing.T) {
	if !StillAssigned(context.Background()) {
		t.Fatal("a context without an assignment counts as one no longer assigned")
	}
	for _, kept := range []bool{true, false} {
		t.Run(fmt.Sprintf("kept=%v", kept), func(t *testing.T) { testResultAfterReRegister(t, kept) })
	}
}

func testResultAfterReRegister(t *testing.T, kept bool) {
	release := make(chan struct{})
	assigned := make(chan bool, 1)
	run := runScripted(t, func(ctx context.Context, a *workerpb.Assignment) *repb.ExecuteResponse {
		<-release
		assigned <- StillAssigned(ctx)
		return &repb.ExecuteResponse{Result: &repb.ActionResult{ExitCode: 42}}
	})
	first := <-run.sched.streams
	recvRegister(t, first)
	send(t, first, &workerpb.SchedulerMessage{Kind: &workerpb.SchedulerMessage_Registered{Registered: &workerpb.Registered{}}})
	send(t, first, &workerpb.SchedulerMessage{Kind: &workerpb.SchedulerMessage_Assignment{Assignment: &workerpb.Assignment{OperationName: "op", Attempt: 3}}})
	deadline := time.Now().Add(20 * time.Second)
	for !run.c.Holding("op") {
		if time.Now().After(deadline) {
			t.Fatal("assignment never held")
		}
		time.Sleep(time.Millisecond)
	}
	first.(*endingStream).end()

	// The action finishes while the worker is between streams (the
	// scheduler has not answered its Register yet).
	second := <-run.sched.streams
	reg := recvRegister(t, second)
	if len(reg.Running) != 1 || reg.Running[0].OperationName != "op" || reg.Running[0].Attempt != 3 {
		t.Fatalf("re-register lists %v, want op attempt 3 in hand", reg.Running)
	}
	close(release)
	registered := &workerpb.Registered{}
	if kept {
		registered.Kept = reg.Running
	}
	send(t, second, &workerpb.SchedulerMessage{Kind: &workerpb.SchedulerMessage_Registered{Registered: registered}})
	if got := <-assigned; got != kept {
		t.Fatalf("the handler was told its action is still assigned: %v; Registered kept it: %v", got, kept)
	}
	for {
		m, err := second.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if r := m.GetResult(); r != nil {
			resp := &repb.ExecuteResponse{}
			if err := proto.Unmarshal(r.ExecuteResponse, resp); err != nil || r.OperationName != "op" || r.Attempt != 3 || resp.Result.GetExitCode() != 42 {
				t.Fatalf("result %v (%v), want op attempt 3 exit 42", r, err)
			}
			break
		}
	}
	run.stop(second)
	if run.c.Holding("op") {
		t.Fatal("delivered result still held")
	}
}

func TestNewRequiresWhatTheProtocolNeeds(t *testing.T) {
	h := func(context.Context, *workerpb.Assignment) *repb.ExecuteResponse { return nil }
	for _, o := range []Options{
		{Register: &workerpb.Register{WorkerId: "w", Concurrency: 1}, Handler: h},
		{Conn: &grpc.ClientConn{}, Register: &workerpb.Register{Concurrency: 1}, Handler: h},
		{Conn: &grpc.ClientConn{}, Register: &workerpb.Register{WorkerId: "w"}, Handler: h},
		// What the scheduler would refuse at every reconnect is refused
		// here, once, where the worker can stop with the reason.
		{Conn: &grpc.ClientConn{}, Register: &workerpb.Register{WorkerId: "..", Concurrency: 1}, Handler: h},
		{Conn: &grpc.ClientConn{}, Register: &workerpb.Register{WorkerId: strings.Repeat("w", 257), Concurrency: 1}, Handler: h},
		{Conn: &grpc.ClientConn{}, Register: &workerpb.Register{WorkerId: "w", Concurrency: 1, InstanceNames: []string{strings.Repeat("i", 1025)}}, Handler: h},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}
}

// TestStillAssignedUntilCancelled: a handler whose session is up is told
// its action is still assigned, and not once the scheduler has sent
// Cancel for it.
func TestStillAssignedUntilCancelled(t *testing.T) {
	assigned := make(chan bool, 1)
	run := runScripted(t, func(ctx context.Context, a *workerpb.Assignment) *repb.ExecuteResponse {
		assigned <- StillAssigned(ctx)
		<-ctx.Done() // the Cancel
		assigned <- StillAssigned(ctx)
		return nil
	})
	s := <-run.sched.streams
	recvRegister(t, s)
	send(t, s, &workerpb.SchedulerMessage{Kind: &workerpb.SchedulerMessage_Registered{Registered: &workerpb.Registered{}}})
	send(t, s, &workerpb.SchedulerMessage{Kind: &workerpb.SchedulerMessage_Assignment{Assignment: &workerpb.Assignment{OperationName: "op", Attempt: 1}}})
	if !<-assigned {
		t.Fatal("a handler of a live session was told its action is no longer assigned")
	}
	send(t, s, &workerpb.SchedulerMessage{Kind: &workerpb.SchedulerMessage_Cancel{Cancel: &workerpb.Cancel{OperationName: "op"}}})
	if <-assigned {
		t.Fatal("a cancelled action is still assigned")
	}
	run.stop(s)
}
