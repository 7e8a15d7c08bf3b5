package runner

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/paddock-build/paddock/api/runnerpb"
	"github.com/paddock-build/paddock/internal/nettest"
)

// TestDialConnTriesTheSocketAgainSoon: while the runner is away (its
// socket closes every connection), DialConn's connection tries again at
// least every socketMaxDelay, so that a restarted runner is reached
// within about a second. With gRPC's default backoff (1 s, 1.6 s, 2.6 s,
// 4.1 s, … up to 120 s) a worker kept failing actions for up to two
// minutes after its runner was back.
func TestDialConnTriesTheSocketAgainSoon(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "runner.sock")
	_, times := nettest.Refuser(t, "unix", sock)
	conn, err := DialConn(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Keeps it trying; fails when the test cancels ctx.
	go func() {
		_, _ = runnerpb.NewRunnerClient(conn).CheckReadiness(ctx, &runnerpb.CheckReadinessRequest{}, grpc.WaitForReady(true))
	}()
	// 100 ms growing by 1.6 to 1 s, ±20 %: the 8th attempt within about
	// 3.6 s of the first (the default backoff's, 49 s); 12 s leaves room
	// for a loaded machine.
	const within = 12 * time.Second
	first := <-times
	for i := 2; i <= 8; i++ {
		select {
		case <-times:
		case <-time.After(time.Until(first.Add(within))):
			t.Fatalf("only %d attempts to reach the runner in %s", i-1, within)
		}
	}
}
