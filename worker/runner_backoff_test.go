package worker_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/connectivity"

	"github.com/paddock-build/paddock/api/runnerpb"
	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/worker"
)

// TestActionReachesARunnerBackBeforeTheBackoffEnds: an action that finds
// its runner's connection down tries the socket at once, not when the
// connection's backoff next allows: a runner that is back already runs
// it. Here the backoff is a minute long, the action waits at most 5 s.
func TestActionReachesARunnerBackBeforeTheBackoffEnds(t *testing.T) {
	h := newHarness(t)
	sock := filepath.Join(t.TempDir(), "runner.sock")
	long := backoff.Config{BaseDelay: time.Minute, Multiplier: 1, MaxDelay: time.Minute}
	conn := grpctest.Dial(t, "unix://"+sock, grpc.WithConnectParams(grpc.ConnectParams{Backoff: long, MinConnectTimeout: time.Second}))
	conn.Connect()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for st := conn.GetState(); st != connectivity.TransientFailure; st = conn.GetState() {
		if !conn.WaitForStateChange(ctx, st) {
			t.Fatal("the connection to an absent runner never failed")
		}
	}
	grpctest.ListenUnix(t, sock, func(g *grpc.Server) { runnerpb.RegisterRunnerServer(g, echoRunner{}) })
	w, err := worker.New(worker.Options{
		ID: "w1", CAS: h.cas, AC: h.ac, Files: h.files, BuildDir: filepath.Join(h.dir, "builds2"),
		Runner: worker.RunnerClient(conn, 5*time.Second),
	})
	if err != nil {
		t.Fatal(err)
	}
	res := ok(t, w.Execute(ctx, h.action(&repb.Command{Arguments: []string{"/bin/echo", "back"}}, &repb.Directory{}, true)))
	if got := string(h.read(res.StdoutDigest)); got != "back\n" {
		t.Fatalf("stdout %q", got)
	}
}
