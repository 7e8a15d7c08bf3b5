package scheduler

import (
	"bytes"
	"net"
	"testing"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/paddock-build/paddock/internal/grpclimit"
	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/internal/h2test"
	"github.com/paddock-build/paddock/storage"
)

// startLimitedFarm serves a scheduler as the roles do: over a listener
// that counts what its connections write, with the send limits.
func startLimitedFarm(t *testing.T) *farm {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cas, ac := storage.NewMemoryBlobStore(), storage.NewMemoryActionCache()
	s, err := New(Options{Config: testConfig(), BlobStore: cas, ActionCache: ac})
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpclimit.New(0).ServerOptions()...)
	s.Register(srv)
	go func() { _ = srv.Serve(grpclimit.TrackSends(lis)) }()
	conn := grpctest.Dial(t, lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	f := &farm{s: s, srv: srv, addr: lis.Addr().String(), cas: cas, ac: ac,
		exec: repb.NewExecutionClient(conn), ops: longrunningpb.NewOperationsClient(conn)}
	t.Cleanup(f.stop)
	return f
}

// A finished operation is sent only once its connection has room for it:
// an outside probe had 100 streams follow one execution of a 3.7 MB
// result without reading, and the scheduler held 526 MB. Here 40
// WaitExecution calls follow a cache hit of 3 MiB on a connection that
// reads nothing; the connection's backlog stays within its 16 MiB.
func TestStalledFollowersHoldOnlyTheirConnectionsBacklog(t *testing.T) {
	f := startLimitedFarm(t)
	ctx := ctxTimeout(t)
	d := f.action(t, "big result", nil)
	if err := f.ac.Put(ctx, "", d, &repb.ActionResult{StdoutRaw: bytes.Repeat([]byte("o"), 3<<20)}); err != nil {
		t.Fatal(err)
	}
	ops, err := collect(must(f.exec.Execute(ctx, executeRequest(d))))
	if err != nil || !ops[len(ops)-1].Done {
		t.Fatalf("the cache hit: %v", err)
	}
	c := h2test.Dial(t, f.addr, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	msg := h2test.Message(&repb.WaitExecutionRequest{Name: ops[0].Name}, 0)
	for range 40 {
		c.Call(t, "/build.bazel.remote.execution.v2.Execution/WaitExecution", msg, true)
	}
	c.Serve()
	// Five 3 MiB operations fit in the connection's 16 MiB; wait until
	// they are handed.
	for deadline := time.Now().Add(15 * time.Second); grpclimit.SendBacklog() < 15<<20; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("send backlog %d: the stalled calls were not answered", grpclimit.SendBacklog())
		}
	}
	// Another connection is answered meanwhile, and the stalled calls
	// have added nothing.
	if _, err := f.ops.GetOperation(ctx, &longrunningpb.GetOperationRequest{Name: ops[0].Name}); err != nil {
		t.Fatalf("GetOperation on another connection: %v", err)
	}
	if b := grpclimit.SendBacklog(); b > 16<<20+4<<10 {
		t.Errorf("send backlog %d bytes, more than one connection's 16 MiB", b)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}
