package auth_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/tap"

	"github.com/paddock-build/paddock/auth"
)

// heldCAS is a ContentAddressableStorage whose FindMissingBlobs on the
// instance "team-a/held" goes on after its client has cancelled, as a
// handler decoding a batch of compressed blobs does: it tells started,
// then cancelled once its context has ended, and returns only once
// release is closed.
type heldCAS struct {
	repb.UnimplementedContentAddressableStorageServer
	started, cancelled chan struct{}
	release            chan struct{}
}

func (c *heldCAS) FindMissingBlobs(ctx context.Context, req *repb.FindMissingBlobsRequest) (*repb.FindMissingBlobsResponse, error) {
	if req.InstanceName == "team-a/held" {
		c.started <- struct{}{}
		<-ctx.Done()
		c.cancelled <- struct{}{}
		<-c.release
	}
	return &repb.FindMissingBlobsResponse{}, nil
}

// A call counts in its tenant's share until its handler returns, not
// until its client cancels it: team-a fills its share with calls whose
// handlers go on after it cancels them, and cannot make another call
// until they return. Before, the share was given back when the call's
// context ended: a tenant that cancelled its calls at once kept any
// number of handlers running (14 decoding after their cancel, in an
// outside test) while it could still open its whole share.
func TestCancelledCallsCountUntilTheirHandlersReturn(t *testing.T) {
	const share = 3
	cas := &heldCAS{started: make(chan struct{}, share), cancelled: make(chan struct{}, share), release: make(chan struct{})}
	release := sync.OnceFunc(func() { close(cas.release) })
	s := startAdmittedServerOf(t, 100, share, func(g *grpc.Server) { repb.RegisterContentAddressableStorageServer(g, cas) })
	t.Cleanup(release)
	a := s.dial(t, tokenA)
	ctx, cancel := context.WithCancel(t.Context())
	ended := make(chan error, share)
	for range share {
		go func() { ended <- findMissing(ctx, a, "team-a/held") }()
	}
	wait := func(what string, c <-chan struct{}) {
		t.Helper()
		for i := range share {
			select {
			case <-c:
			case <-time.After(10 * time.Second):
				t.Fatalf("%s: %d of %d within 10 s", what, i, share)
			}
		}
	}
	wait("handlers started", cas.started)
	cancel()
	for range share {
		wantCode(t, <-ended, codes.Canceled, "a call team-a cancelled")
	}
	wait("handlers told of the cancel", cas.cancelled)
	// The share was given back, if at all, right after the cancel.
	for deadline := time.Now().Add(500 * time.Millisecond); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		wantCode(t, findMissing(t.Context(), a, "team-a"), codes.ResourceExhausted,
			"team-a's call while its cancelled calls' handlers run", `tenant "team-a"`)
	}
	release()
	waitFor(t, "team-a's share to come back", func() bool { return findMissing(t.Context(), a, "team-a") == nil })
	waitFor(t, "the counts to go", func() bool { return auth.OpenParties(s.ic) == 0 })
}

// A call whose context ends after it was admitted but before its handler
// starts (its client reset it right after sending its request) has its
// share given back then, and is refused with its context's error rather
// than run uncounted: else a tenant resetting every call would run any
// number of handlers.
func TestACallEndedBeforeItsHandlerIsNotRun(t *testing.T) {
	ic := auth.NewInterceptors(loadTestPolicy(t), nil).LimitTenantCalls(1)
	info := &tap.Info{FullMethodName: findMissingMethod}
	ctx, cancel := context.WithCancel(incomingToken(tokenA))
	admitted, err := ic.Admit(ctx, info)
	if err != nil {
		t.Fatal(err)
	}
	_, err = ic.Admit(incomingToken(tokenA), info)
	wantCode(t, err, codes.ResourceExhausted, "team-a's second call with a share of 1", `tenant "team-a"`)
	cancel()
	waitFor(t, "the ended call's share to come back", func() bool { return auth.OpenParties(ic) == 0 })
	var ran atomic.Bool
	_, err = auth.UnaryInterceptor(ic)(admitted, &repb.FindMissingBlobsRequest{InstanceName: "team-a"},
		&grpc.UnaryServerInfo{FullMethod: findMissingMethod},
		func(context.Context, any) (any, error) { ran.Store(true); return &repb.FindMissingBlobsResponse{}, nil })
	wantCode(t, err, codes.Canceled, "the handler of a call ended before it")
	if ran.Load() {
		t.Fatal("the handler of a call whose share was given back ran")
	}
	if n := auth.OpenParties(ic); n != 0 {
		t.Fatalf("%d parties counted after the refused handler, want 0", n)
	}
}
