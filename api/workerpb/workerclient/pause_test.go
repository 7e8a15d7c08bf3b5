package workerclient

import (
	"context"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/internal/grpctest"
)

// TestPauseAndIncarnationReachTheScheduler: the pause state goes out in
// every Register and, when it changes, in a Heartbeat at once; the
// incarnation token is set, and the same on every reconnect of the
// process (and not the same in another client).
func TestPauseAndIncarnationReachTheScheduler(t *testing.T) {
	sched := &scriptedScheduler{streams: make(chan workerpb.WorkerService_ConnectServer)}
	addr := grpctest.Listen(t, func(g *grpc.Server) { workerpb.RegisterWorkerServiceServer(g, sched) })
	opts := Options{Conn: grpctest.Dial(t, "passthrough:///"+addr), Register: &workerpb.Register{WorkerId: "w", Concurrency: 1},
		ReconnectDelay: time.Millisecond, Handler: func(context.Context, *workerpb.Assignment) *repb.ExecuteResponse { return nil }}
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if other, _ := New(opts); other.incarnation == c.incarnation {
		t.Fatal("two clients share an incarnation")
	}
	c.SetPaused(true, "runner not ready")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	runDone := make(chan error, 1)
	go func() { runDone <- c.Run(ctx) }()

	register := func() (workerpb.WorkerService_ConnectServer, *workerpb.Register) {
		t.Helper()
		s := <-sched.streams
		m, err := s.Recv()
		if err != nil || m.GetRegister() == nil {
			t.Fatalf("first message %v, %v; want register", m, err)
		}
		send(t, s, &workerpb.SchedulerMessage{Kind: &workerpb.SchedulerMessage_Registered{Registered: &workerpb.Registered{}}})
		return s, m.GetRegister()
	}
	heartbeat := func(s workerpb.WorkerService_ConnectServer, paused bool) *workerpb.Heartbeat {
		t.Helper()
		for {
			m, err := s.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if hb := m.GetHeartbeat(); hb != nil && hb.Paused == paused {
				return hb
			}
		}
	}
	first, reg := register()
	if !reg.Paused || reg.PauseReason != "runner not ready" || reg.Incarnation == "" {
		t.Fatalf("register %v, want paused with its reason, and an incarnation", reg)
	}
	c.SetPaused(false, "")
	heartbeat(first, false)
	c.SetPaused(true, "storage unreachable")
	if hb := heartbeat(first, true); hb.PauseReason != "storage unreachable" {
		t.Fatalf("heartbeat %v, want the reason", hb)
	}
	first.(*endingStream).end()
	second, again := register()
	if !again.Paused || again.Incarnation != reg.Incarnation {
		t.Fatalf("re-register %v, want paused, incarnation %q", again, reg.Incarnation)
	}
	cancel()
	second.(*endingStream).end()
	<-runDone
}
