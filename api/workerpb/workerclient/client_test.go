package workerclient

import (
	"context"
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

// TestResultFinishedWhileDisconnectedIsSentAfterReRegister: an action
// that finishes after its session broke is listed as held at the next
// Register and its result sent once registered; its handler was told its
// session had ended (SessionEnded), and one of a live session is not.
func TestResultFinishedWhileDisconnectedIsSentAfterReRegister(t *testing.T) {
	if SessionEnded(context.Background()) {
		t.Fatal("a context without a session counts as one that ended")
	}
	sched := &scriptedScheduler{streams: make(chan workerpb.WorkerService_ConnectServer)}
	addr := grpctest.Listen(t, func(g *grpc.Server) { workerpb.RegisterWorkerServiceServer(g, sched) })
	conn := grpctest.Dial(t, "passthrough:///"+addr)

	release := make(chan struct{})
	finished := make(chan struct{})
	var sessionEnded bool
	c, err := New(Options{
		Conn:           conn,
		Register:       &workerpb.Register{WorkerId: "w", Concurrency: 1},
		ReconnectDelay: time.Millisecond,
		Handler: func(ctx context.Context, a *workerpb.Assignment) *repb.ExecuteResponse {
			<-release
			defer close(finished)
			sessionEnded = SessionEnded(ctx)
			return &repb.ExecuteResponse{Result: &repb.ActionResult{ExitCode: 42}}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	runDone := make(chan error, 1)
	go func() { runDone <- c.Run(ctx) }()

	recvRegister := func(s workerpb.WorkerService_ConnectServer) *workerpb.Register {
		m, err := s.Recv()
		if err != nil || m.GetRegister() == nil {
			t.Fatalf("first message %v, %v; want register", m, err)
		}
		return m.GetRegister()
	}
	first := <-sched.streams
	recvRegister(first)
	first.Send(&workerpb.SchedulerMessage{Kind: &workerpb.SchedulerMessage_Registered{Registered: &workerpb.Registered{}}})
	first.Send(&workerpb.SchedulerMessage{Kind: &workerpb.SchedulerMessage_Assignment{Assignment: &workerpb.Assignment{OperationName: "op", Attempt: 3}}})
	deadline := time.Now().Add(20 * time.Second)
	for !c.Holding("op") {
		if time.Now().After(deadline) {
			t.Fatal("assignment never held")
		}
		time.Sleep(time.Millisecond)
	}
	first.(*endingStream).end()

	// The action finishes while the worker is between streams (the
	// scheduler has not answered its Register yet).
	second := <-sched.streams
	reg := recvRegister(second)
	if len(reg.Running) != 1 || reg.Running[0].OperationName != "op" || reg.Running[0].Attempt != 3 {
		t.Fatalf("re-register lists %v, want op attempt 3 in hand", reg.Running)
	}
	close(release)
	<-finished
	if !sessionEnded {
		t.Fatal("the handler was not told that the session which assigned its action had ended")
	}
	second.Send(&workerpb.SchedulerMessage{Kind: &workerpb.SchedulerMessage_Registered{Registered: &workerpb.Registered{}}})
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
	cancel()
	second.(*endingStream).end()
	<-runDone
	if c.Holding("op") {
		t.Fatal("delivered result still held")
	}
}

func TestNewRequiresWhatTheProtocolNeeds(t *testing.T) {
	h := func(context.Context, *workerpb.Assignment) *repb.ExecuteResponse { return nil }
	for _, o := range []Options{
		{Register: &workerpb.Register{WorkerId: "w", Concurrency: 1}, Handler: h},
		{Conn: &grpc.ClientConn{}, Register: &workerpb.Register{Concurrency: 1}, Handler: h},
		{Conn: &grpc.ClientConn{}, Register: &workerpb.Register{WorkerId: "w"}, Handler: h},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}
}

// TestSessionEndedIsFalseWhileTheSessionLives: a handler whose session is
// still up is not told it ended.
func TestSessionEndedIsFalseWhileTheSessionLives(t *testing.T) {
	sched := &scriptedScheduler{streams: make(chan workerpb.WorkerService_ConnectServer)}
	addr := grpctest.Listen(t, func(g *grpc.Server) { workerpb.RegisterWorkerServiceServer(g, sched) })
	conn := grpctest.Dial(t, "passthrough:///"+addr)
	ended := make(chan bool, 1)
	c, err := New(Options{
		Conn: conn, Register: &workerpb.Register{WorkerId: "w", Concurrency: 1}, ReconnectDelay: time.Millisecond,
		Handler: func(ctx context.Context, a *workerpb.Assignment) *repb.ExecuteResponse {
			ended <- SessionEnded(ctx)
			return &repb.ExecuteResponse{Result: &repb.ActionResult{}}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	runDone := make(chan error, 1)
	go func() { runDone <- c.Run(ctx) }()
	s := <-sched.streams
	if m, err := s.Recv(); err != nil || m.GetRegister() == nil {
		t.Fatalf("first message %v, %v; want register", m, err)
	}
	s.Send(&workerpb.SchedulerMessage{Kind: &workerpb.SchedulerMessage_Registered{Registered: &workerpb.Registered{}}})
	s.Send(&workerpb.SchedulerMessage{Kind: &workerpb.SchedulerMessage_Assignment{Assignment: &workerpb.Assignment{OperationName: "op", Attempt: 1}}})
	if <-ended {
		t.Fatal("a handler of a live session was told its session ended")
	}
	cancel()
	s.(*endingStream).end()
	<-runDone
}
