package main

import (
	"context"
	"errors"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/configs"
	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/grpclimit"
	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/storage"
)

// serveStorage serves opts on loopback with the farm's own server options
// (its keepalive enforcement among them) and returns the address.
func serveStorage(t *testing.T, opts storage.ServerOptions) string {
	t.Helper()
	srv := storage.NewServer(opts)
	t.Cleanup(srv.Close)
	return grpctest.Listen(t, srv.Register, append(srv.GRPCServerOptions(), grpclimit.New(0).ServerOptions()...)...)
}

// A front configured with remote.instance_name keeps action results on the
// backend under that name, as its CAS blobs: a client's empty instance
// name is the configured one, another name is below it, so two clients'
// (two tenants') results for one action stay apart. Before, results went
// to the client's instance while blobs went to the configured one, and a
// backend serving only that one missed or refused every result.
func TestRemoteBackendActionCacheUsesItsInstanceName(t *testing.T) {
	backendAC := storage.NewMemoryActionCache()
	addr := serveStorage(t, storage.ServerOptions{CAS: storage.NewMemoryBlobStore(), AC: backendAC, SkipCompletenessChecks: true})
	ctx := context.Background()
	o, err := openBackend(ctx, configs.Backend{Remote: &configs.RemoteStorage{Endpoint: addr, InstanceName: "inst-x"}}, "backend", backendDeps{})
	if err != nil {
		t.Fatal(err)
	}
	defer o.close()
	front := storage.NewServer(storage.ServerOptions{CAS: o.cas, AC: o.ac})
	t.Cleanup(front.Close)
	conn := grpctest.Serve(t, front.Register, front.GRPCServerOptions()...)
	cas, ac := repb.NewContentAddressableStorageClient(conn), repb.NewActionCacheClient(conn)

	action := []byte("an action")
	ad := digest.FromBytes(repb.DigestFunction_SHA256, action)
	for i, instance := range []string{"", "tenant-b"} {
		// The front checks that the Action is in its CAS first.
		if _, err := cas.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{InstanceName: instance,
			Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: ad.Proto(), Data: action}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := ac.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{InstanceName: instance,
			ActionDigest: ad.Proto(), ActionResult: &repb.ActionResult{ExitCode: int32(10 + i)}}); err != nil {
			t.Fatalf("UpdateActionResult for %q through the front: %v", instance, err)
		}
	}
	for backend, want := range map[string]int32{"inst-x": 10, "inst-x/tenant-b": 11} {
		if r, err := backendAC.Get(ctx, backend, ad); err != nil || r.ExitCode != want {
			t.Errorf("backend result under %q: %v, %v; want exit code %d", backend, r, err, want)
		}
	}
	for _, backend := range []string{"", "tenant-b"} {
		if r, err := backendAC.Get(ctx, backend, ad); status.Code(err) != codes.NotFound {
			t.Errorf("backend result under %q: %v, %v; want none outside inst-x", backend, r, err)
		}
	}
	for i, instance := range []string{"", "tenant-b"} {
		r, err := ac.GetActionResult(ctx, &repb.GetActionResultRequest{InstanceName: instance, ActionDigest: ad.Proto()})
		if err != nil || r.ExitCode != int32(10+i) {
			t.Errorf("GetActionResult for %q through the front: %v, %v; want exit code %d", instance, r, err, 10+i)
		}
	}
}

// The production keepalive fits the farm's servers' enforcement policy:
// pings come at least a second more than grpclimit.MinPingInterval apart
// (grpclimit's TestKeepalivePingsAreAccepted shows the farm's server
// options accept those, and TestPingFloodIsRefused that faster ones earn
// GOAWAY too_many_pings), never without calls, and a dead storage is
// noticed within a minute.
func TestStorageKeepaliveFitsTheFarmsPolicy(t *testing.T) {
	kp := storageKeepalive()
	if kp.Time < grpclimit.MinPingInterval+time.Second {
		t.Errorf("keepalive time %s: want at least %s, or the farm's servers send GOAWAY too_many_pings", kp.Time, grpclimit.MinPingInterval+time.Second)
	}
	if kp.Timeout <= 0 || kp.Time+kp.Timeout > time.Minute {
		t.Errorf("keepalive %s + %s: want a dead storage noticed within a minute", kp.Time, kp.Timeout)
	}
	if kp.PermitWithoutStream {
		t.Error("keepalive pings without calls: servers on gRPC's default policy end such connections")
	}
}

// A call in flight to a storage that stops answering without closing its
// connection (SIGSTOP, a partition: here a proxy that stops forwarding)
// fails UNAVAILABLE within the keepalive's time and timeout, instead of
// waiting for its deadline (one read waited 2m33s). The server is the
// farm's own, with its keepalive enforcement; the time is gRPC's shortest.
func TestStorageCallFailsWhenStorageStalls(t *testing.T) {
	t.Parallel()
	kp := keepalive.ClientParameters{Time: 10 * time.Second, Timeout: time.Second}
	took, err := stallMidCall(t, kp, func(addr string) (*grpc.ClientConn, error) { return dialStorageKeepalive(addr, nil, kp) },
		func(ctx context.Context, conn *grpc.ClientConn) error {
			_, err := storage.NewRemoteBlobStore(conn, storage.RemoteOptions{}).FindMissing(ctx, []digest.Digest{digest.FromBytes(repb.DigestFunction_SHA256, []byte("x"))})
			return err
		})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("the call in flight ended with %v after %s; want UNAVAILABLE", err, took)
	}
	// Slack for a loaded machine: the ping is sent Time after the last
	// read, which was before the stall.
	if took > kp.Time+kp.Timeout+5*time.Second {
		t.Fatalf("the call failed %s after the stall; want within %s", took, kp.Time+kp.Timeout)
	}
}

// stallMidCall serves a storage behind a proxy, dials the proxy with dial,
// and makes call; once the call is in the storage, the proxy stops
// forwarding, without closing anything. It returns how long after the
// stall the call ended, and its error.
func stallMidCall(t *testing.T, kp keepalive.ClientParameters, dial func(addr string) (*grpc.ClientConn, error), call func(context.Context, *grpc.ClientConn) error) (time.Duration, error) {
	cas := &gatedStore{BlobStore: storage.NewMemoryBlobStore(), entered: make(chan struct{}, 1), release: make(chan struct{})}
	defer close(cas.release)
	proxy := grpctest.NewStallProxy(t, serveStorage(t, storage.ServerOptions{CAS: cas, AC: storage.NewMemoryActionCache()}))
	conn, err := dial(proxy.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*(kp.Time+kp.Timeout))
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- call(ctx, conn) }()
	<-cas.entered
	proxy.Stall()
	stalled := time.Now()
	err = <-done
	return time.Since(stalled), err
}

// gatedStore is a BlobStore whose FindMissing says it was entered and then
// waits for release: a call that stays in flight.
type gatedStore struct {
	storage.BlobStore
	entered chan struct{}
	release chan struct{}
}

func (g *gatedStore) FindMissing(ctx context.Context, ds []digest.Digest) ([]digest.Digest, error) {
	select {
	case g.entered <- struct{}{}:
	default:
	}
	select {
	case <-g.release:
	case <-ctx.Done():
	}
	return nil, errors.New("released")
}

// TestRunConnectionNoticesAStall: `paddock run`'s connection pings while
// a call is in flight, so a farm cut off without the connection being
// closed (a partition) fails the call UNAVAILABLE, which the run resumes
// from, instead of leaving it waiting for good: the action finished
// during a partition, and `paddock run` printed nothing for twelve
// minutes. The time is gRPC's shortest.
func TestRunConnectionNoticesAStall(t *testing.T) {
	t.Parallel()
	kp := keepalive.ClientParameters{Time: 10 * time.Second, Timeout: time.Second}
	plaintext := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	took, err := stallMidCall(t, kp, func(addr string) (*grpc.ClientConn, error) { return dialRunEndpoint(addr, plaintext, kp) },
		func(ctx context.Context, conn *grpc.ClientConn) error {
			_, err := repb.NewContentAddressableStorageClient(conn).FindMissingBlobs(ctx, &repb.FindMissingBlobsRequest{BlobDigests: []*repb.Digest{digest.FromBytes(repb.DigestFunction_SHA256, []byte("x")).Proto()}})
			return err
		})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("the call in flight when the farm stalled ended with %v after %s; want UNAVAILABLE before its deadline", err, took)
	}
}
