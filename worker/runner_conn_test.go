package worker_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/api/runnerpb"
	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/worker"
)

// countingRunner is echoRunner counting its calls.
type countingRunner struct {
	echoRunner
	ready, runs atomic.Int64
}

func (c *countingRunner) CheckReadiness(ctx context.Context, req *runnerpb.CheckReadinessRequest) (*runnerpb.CheckReadinessResponse, error) {
	c.ready.Add(1)
	return c.echoRunner.CheckReadiness(ctx, req)
}

func (c *countingRunner) Run(ctx context.Context, req *runnerpb.RunRequest) (*runnerpb.RunResponse, error) {
	c.runs.Add(1)
	return c.echoRunner.Run(ctx, req)
}

// TestRunnerConnReadySkipsReadinessCheck: with Options.RunnerConn, actions
// go straight to a runner whose connection is ready; once the runner is
// gone, an action waits RunnerReadyTimeout for it and is then reported
// retryable (UNAVAILABLE), as without RunnerConn.
func TestRunnerConnReadySkipsReadinessCheck(t *testing.T) {
	h := newHarness(t)
	sock := filepath.Join(t.TempDir(), "runner.sock")
	r := &countingRunner{}
	g := grpctest.ListenUnix(t, sock, func(g *grpc.Server) { runnerpb.RegisterRunnerServer(g, r) })
	conn := grpctest.Dial(t, "unix://"+sock)
	w, err := worker.New(worker.Options{
		ID: "w1", CAS: h.cas, AC: h.ac, Files: h.files, BuildDir: filepath.Join(h.dir, "builds2"),
		Runner: worker.RunnerClient(conn, 300*time.Millisecond),
	})
	if err != nil {
		t.Fatal(err)
	}
	echo := func(s string) *repb.Command { return &repb.Command{Arguments: []string{"/bin/echo", s}} }
	for i, s := range []string{"one", "two", "three"} {
		res := ok(t, w.Execute(context.Background(), h.action(echo(s), &repb.Directory{}, true)))
		if got := string(h.read(res.StdoutDigest)); got != s+"\n" {
			t.Fatalf("action %d: stdout %q", i, got)
		}
	}
	if runs, ready := r.runs.Load(), r.ready.Load(); runs != 3 || ready > 1 {
		t.Errorf("%d Runs and %d readiness checks for 3 actions, want 3 and at most 1 (before the connection was up)", runs, ready)
	}

	g.Stop()
	// Until the loss is seen, with a deadline.
	lossCtx, cancelLoss := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelLoss()
	for state := conn.GetState(); state == connectivity.Ready; state = conn.GetState() {
		if !conn.WaitForStateChange(lossCtx, state) {
			t.Fatal("the runner's connection still looks ready 10 s after the runner stopped")
		}
	}
	start := time.Now()
	resp := w.Execute(context.Background(), h.action(echo("four"), &repb.Directory{}, true))
	if st := status.FromProto(resp.Status); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "runner not ready") {
		t.Errorf("with the runner gone: %v, want UNAVAILABLE, runner not ready", st)
	}
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Errorf("gave up after %s, before RunnerReadyTimeout", waited)
	}
}
