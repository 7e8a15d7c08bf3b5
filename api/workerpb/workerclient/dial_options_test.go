package workerclient

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/internal/grpclimit"
	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/internal/nettest"
)

// TestReconnectBackoffIsCapped: while the scheduler cannot be reached, the
// connection of DialOptions tries again at least every ReconnectMaxDelay
// (plus gRPC's 20 % jitter), where gRPC's default backoff grows to 120 s
// (1 s, 1.6 s, 2.6 s, 4.1 s, …): a worker came back after
// reconnect_grace and its actions ran again.
func TestReconnectBackoffIsCapped(t *testing.T) {
	addr, times := nettest.Refuser(t, "tcp", "127.0.0.1:0")
	conn, err := grpc.NewClient("passthrough:///"+addr, append(DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Keeps the connection trying; it fails only once the test cancels ctx.
	go func() { _, _ = workerpb.NewWorkerServiceClient(conn).Connect(ctx, grpc.WaitForReady(true)) }()
	// Capped, a gap is at most 2.4 s; by default the 6th and 7th are at
	// least 5.2 s and 8.4 s (6.6 s and 10.5 s, less 20 %). 4.5 s tells the
	// two apart with 2 s to spare on a loaded machine.
	limit := 4500 * time.Millisecond
	var last time.Time
	for i := 0; i < 8; i++ {
		select {
		case at := <-times:
			if gap := at.Sub(last); i > 0 && gap > limit {
				t.Fatalf("attempt %d came %s after the one before, over %s", i+1, gap, limit)
			}
			last = at
		case <-time.After(limit + time.Second):
			t.Fatalf("attempt %d did not come within %s of the one before", i+1, limit+time.Second)
		}
	}
}

// TestKeepaliveFitsTheSchedulersPolicy: Keepalive pings no more often
// than the farm's servers allow (or they would send GOAWAY too_many_pings)
// and notices a dead scheduler within a minute.
func TestKeepaliveFitsTheSchedulersPolicy(t *testing.T) {
	if Keepalive.Time < grpclimit.MinPingInterval+time.Second || Keepalive.Timeout <= 0 || Keepalive.Time+Keepalive.Timeout > time.Minute {
		t.Errorf("keepalive %+v: want pings at least %s apart, a dead scheduler noticed within a minute", Keepalive, grpclimit.MinPingInterval+time.Second)
	}
}

// TestPartitionedSchedulerIsNoticed: a scheduler that stops answering
// without closing the connection (a partition) ends the session within
// the keepalive's time and timeout, so the worker reconnects; without a
// keepalive it waited on the dead stream, and after the partition healed
// its Register crept through TCP's backoff, up to two minutes.
func TestPartitionedSchedulerIsNoticed(t *testing.T) {
	sched := &scriptedScheduler{streams: make(chan workerpb.WorkerService_ConnectServer, 4)}
	proxy := grpctest.NewStallProxy(t, grpctest.Listen(t, func(g *grpc.Server) { workerpb.RegisterWorkerServiceServer(g, sched) }))
	kp := keepalive.ClientParameters{Time: 10 * time.Second, Timeout: time.Second} // gRPC's shortest time
	conn, err := grpc.NewClient("passthrough:///"+proxy.Addr, append(dialOptions(kp), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c, err := New(Options{Conn: conn, Register: &workerpb.Register{WorkerId: "w", Concurrency: 1}, ReconnectDelay: time.Millisecond,
		Handler: func(context.Context, *workerpb.Assignment) *repb.ExecuteResponse { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = c.Run(ctx) }() // returns ctx's error once the test ends
	first := <-sched.streams
	defer first.(*endingStream).end()
	if m, err := first.Recv(); err != nil || m.GetRegister() == nil {
		t.Fatalf("first message %v, %v; want register", m, err)
	}
	send(t, first, &workerpb.SchedulerMessage{Kind: &workerpb.SchedulerMessage_Registered{Registered: &workerpb.Registered{}}})
	waitUntil(t, 10*time.Second, "registered", c.Connected)
	proxy.Stall() // a partition
	waitUntil(t, 3*(kp.Time+kp.Timeout), "the dead session noticed", func() bool { return !c.Connected() })
}

// waitUntil polls cond until it holds, failing the test after d.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
	}
}
