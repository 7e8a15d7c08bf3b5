package scheduler

import (
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestStoppingEndsClientStreams: when the scheduler stops, its clients'
// Execute and WaitExecution streams end at once with UNAVAILABLE, which
// clients answer with WaitExecution (on the restarted scheduler, whose
// journal keeps the operation), and the server's graceful stop does not
// wait on them. Before, they went on until the server gave up on them
// seconds later, its port closed meanwhile, and Bazel failed the build
// after a `systemctl restart`.
func TestStoppingEndsClientStreams(t *testing.T) {
	f := startFarm(t, testConfig(), "", nil, nil)
	ctx := ctxTimeout(t)
	stream, err := f.exec.Execute(ctx, executeRequest(f.action(t, "queued, no worker", nil)))
	if err != nil {
		t.Fatal(err)
	}
	op, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	wait, err := f.exec.WaitExecution(ctx, &repb.WaitExecutionRequest{Name: op.Name})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wait.Recv(); err != nil {
		t.Fatal(err)
	}
	stopped := make(chan struct{})
	go func() { f.srv.GracefulStop(); close(stopped) }()
	f.s.Close()
	for name, recv := range map[string]func() error{
		"Execute":       func() error { _, err := stream.Recv(); return err },
		"WaitExecution": func() error { _, err := wait.Recv(); return err },
	} {
		err := recv()
		for err == nil { // updates sent before the stop
			err = recv()
		}
		if status.Code(err) != codes.Unavailable {
			t.Errorf("%s stream at the stop: %v, want UNAVAILABLE", name, err)
		}
	}
	select {
	case <-stopped:
	case <-time.After(20 * time.Second):
		t.Fatal("the server's graceful stop still waits for its streams 20 s after the scheduler stopped")
	}
}
