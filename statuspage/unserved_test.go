package statuspage_test

import (
	"context"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/scheduler"
	"github.com/paddock-build/paddock/storage"
)

// unserved is a scheduler with no worker, on memory stores: every action
// executed on it stays queued.
type unserved struct {
	t     testing.TB
	sched *scheduler.Scheduler
	cas   storage.BlobStore
	ac    storage.ActionCache
	exec  repb.ExecutionClient
	root  *repb.Digest
}

func newUnserved(t testing.TB) *unserved {
	cas, ac := storage.NewMemoryBlobStore(), storage.NewMemoryActionCache()
	sched, err := scheduler.New(scheduler.Options{Config: scheduler.DefaultConfig(), BlobStore: cas, ActionCache: ac})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sched.Close) // after the server has stopped
	return &unserved{t: t, sched: sched, cas: cas, ac: ac,
		exec: repb.NewExecutionClient(grpctest.Serve(t, sched.Register)), root: put(t, cas, &repb.Directory{}).Proto()}
}

// queue executes args in instance and leaves the operation queued: the
// client stops following it once it is accepted.
func (u *unserved) queue(instance string, args ...string) {
	u.t.Helper()
	cmd := put(u.t, u.cas, &repb.Command{Arguments: args})
	ad := put(u.t, u.cas, &repb.Action{CommandDigest: cmd.Proto(), InputRootDigest: u.root})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := u.exec.Execute(ctx, &repb.ExecuteRequest{InstanceName: instance, ActionDigest: ad.Proto()})
	if err == nil {
		_, err = stream.Recv()
	}
	if err != nil {
		u.t.Fatal(err)
	}
}
