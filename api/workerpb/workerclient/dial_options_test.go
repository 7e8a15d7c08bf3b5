package workerclient

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/paddock-build/paddock/api/workerpb"
)

// acceptTimes listens on loopback, closes every connection at once (as a
// port nothing serves would refuse it) and sends the time of each.
func acceptTimes(t *testing.T) (string, <-chan time.Time) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	times := make(chan time.Time, 100)
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			times <- time.Now()
			c.Close()
		}
	}()
	return lis.Addr().String(), times
}

// TestReconnectBackoffIsCapped: while the scheduler cannot be reached, the
// connection of DialOptions tries again at least every ReconnectMaxDelay
// (plus gRPC's 20 % jitter), where gRPC's default backoff grows to 120 s
// (1 s, 1.6 s, 2.6 s, 4.1 s, …): a worker came back after
// reconnect_grace and its actions ran again.
func TestReconnectBackoffIsCapped(t *testing.T) {
	addr, times := acceptTimes(t)
	conn, err := grpc.NewClient("passthrough:///"+addr, append(DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go workerpb.NewWorkerServiceClient(conn).Connect(ctx, grpc.WaitForReady(true)) // keeps the connection trying
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
