package auth_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	rapb "github.com/bazelbuild/remote-apis/build/bazel/remote/asset/v1"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/asset"
	"github.com/paddock-build/paddock/auth"
	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/farmtest"
	"github.com/paddock-build/paddock/internal/grpclimit"
	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/storage"
)

// tokenScheduler is the scheduler's credential towards storage.
const tokenScheduler = "scheduler-token"

// splitPolicy is the test policy with the scheduler listed as one.
func splitPolicy() string {
	return testPolicy() + fmt.Sprintf("schedulers:\n  - {name: front, token_sha256: %s}\n", hashOf(tokenScheduler))
}

// splitFarm is `paddock storage` with the Remote Asset API, and in front
// of it a scheduler's front as `paddock scheduler` builds it: storage's
// services over a RemoteBlobStore and RemoteActionCache, and the asset
// proxy, all on one connection to storage under the scheduler's token.
// Both serve the policy as the roles do (Admit in the server's tap). The
// asset service downloads from origin.
type splitFarm struct {
	storageAddr, frontAddr string
	origin                 *slowOrigin
}

func startSplitFarm(t *testing.T) *splitFarm {
	t.Helper()
	policy := farmtest.Policy(t, splitPolicy())
	sf := &splitFarm{origin: startSlowOrigin(t)}
	cas := storage.NewMemoryBlobStore()
	back := storage.NewServer(storage.ServerOptions{CAS: cas, AC: storage.NewMemoryActionCache()})
	t.Cleanup(back.Close)
	assets, err := asset.New(asset.Options{CAS: cas, Dir: t.TempDir(), AllowedHosts: []string{sf.origin.host()}, AllowWithoutChecksum: true})
	if err != nil {
		t.Fatal(err)
	}
	sf.storageAddr = grpctest.Listen(t, func(g *grpc.Server) { back.Register(g); assets.Register(g) }, roleServerOptions(policy)...)
	conn := grpctest.Dial(t, sf.storageAddr, grpc.WithPerRPCCredentials(insecureToken(tokenScheduler)))
	front := storage.NewServer(storage.ServerOptions{CAS: storage.NewRemoteBlobStore(conn, storage.RemoteOptions{ForwardInstance: true}),
		AC: storage.NewRemoteActionCache(conn)})
	t.Cleanup(front.Close)
	sf.frontAddr = grpctest.Listen(t, func(g *grpc.Server) { front.Register(g); asset.NewProxy(conn).Register(g) },
		append(front.GRPCServerOptions(), roleServerOptions(policy)...)...)
	return sf
}

// roleServerOptions are a role's server options under policy: the
// interceptors with a tenant's share of calls, and the bound on calls
// whose tap admits each stream.
func roleServerOptions(policy *auth.Policy) []grpc.ServerOption {
	ic := auth.NewInterceptors(policy, nil).LimitTenantCalls(grpclimit.DefaultMax() / 2)
	opts := append(ic.ServerOptions(), grpclimit.WithAdmission(ic.Admit))
	return append(opts, grpclimit.New(0).ServerOptions(opts...)...)
}

// dial connects to addr (the front or storage) with token.
func (sf *splitFarm) dial(t *testing.T, addr, token string) *grpc.ClientConn {
	t.Helper()
	return grpctest.Dial(t, addr, grpc.WithPerRPCCredentials(insecureToken(token)))
}

// slowOrigin is an HTTP server FetchBlob downloads from: /fast/NAME
// answers NAME at once; /slow/NAME answers nothing until the test ends,
// and tells each such request's arrival.
type slowOrigin struct {
	*httptest.Server
	arrived chan string
}

func startSlowOrigin(t *testing.T) *slowOrigin {
	o := &slowOrigin{arrived: make(chan string, 100)}
	release := make(chan struct{})
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if name, ok := strings.CutPrefix(r.URL.Path, "/slow/"); ok {
			o.arrived <- name
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		fmt.Fprint(w, strings.TrimPrefix(r.URL.Path, "/fast/"))
	}))
	t.Cleanup(o.Close)
	t.Cleanup(func() { close(release) }) // before Close, which waits for the handlers
	return o
}

func (o *slowOrigin) host() string { return strings.TrimPrefix(o.URL, "http://") }

// fetch is one FetchBlob of the origin's path on instance, within timeout.
func (sf *splitFarm) fetch(ctx context.Context, conn grpcConn, instance, path string, timeout time.Duration) (*rapb.FetchBlobResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return rapb.NewFetchClient(conn).FetchBlob(ctx, &rapb.FetchBlobRequest{InstanceName: instance, Uris: []string{sf.origin.URL + path}})
}

// holdDownloads starts n downloads of slow paths for instance on conn,
// and returns once the origin has them all: each holds a download slot
// of storage until the test ends.
func (sf *splitFarm) holdDownloads(t *testing.T, conn grpcConn, instance string, n int) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	for i := range n {
		go func() {
			// Held until the test ends; only the slot it takes matters.
			_, _ = sf.fetch(ctx, conn, instance, fmt.Sprintf("/slow/%s-%d", instance, i), time.Minute)
		}()
	}
	for range n {
		select {
		case <-sf.origin.arrived:
		case <-time.After(10 * time.Second):
			t.Fatalf("%d slow downloads of %s: not all started within 10 s", n, instance)
		}
	}
}

// wantFetched fails unless resp is the fast download of content.
func wantFetched(t *testing.T, what string, resp *rapb.FetchBlobResponse, err error, content string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if want := digest.FromBytes(repb.DigestFunction_SHA256, []byte(content)); resp.GetBlobDigest().GetHash() != want.Hash() {
		t.Fatalf("%s: fetched %v, want %s", what, resp.GetBlobDigest(), want)
	}
}

// onBehalfOf is ctx with the header naming tenant, as a scheduler sends it.
func onBehalfOf(ctx context.Context, tenant string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, auth.OnBehalfOfHeader, tenant)
}

// Through the scheduler's front, a tenant's identity holding ac-write
// pushes Remote Asset records, and one without it is refused. Before, the
// front reached storage as a worker identity, which may not push: every
// push through the scheduler failed, although the front had checked the
// client's ac-write.
func TestSchedulerForwardsPushesForTenants(t *testing.T) {
	sf := startSplitFarm(t)
	writer, ci := sf.dial(t, sf.frontAddr, tokenAWrite), sf.dial(t, sf.frontAddr, tokenA)
	blob := []byte("pushed through the scheduler")
	d := digest.FromBytes(repb.DigestFunction_SHA256, blob)
	up, err := repb.NewContentAddressableStorageClient(writer).BatchUpdateBlobs(t.Context(), &repb.BatchUpdateBlobsRequest{InstanceName: "team-a",
		Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: d.Proto(), Data: blob}}})
	if err != nil || status.FromProto(up.GetResponses()[0].GetStatus()).Err() != nil {
		t.Fatalf("upload through the front: %v, %v", up, err)
	}
	push := &rapb.PushBlobRequest{InstanceName: "team-a", Uris: []string{"urn:through-the-front"}, BlobDigest: d.Proto()}
	if _, err := rapb.NewPushClient(writer).PushBlob(t.Context(), push); err != nil {
		t.Fatalf("team-a's writer (ac-write) pushing through the front: %v", err)
	}
	resp, err := rapb.NewFetchClient(ci).FetchBlob(t.Context(), &rapb.FetchBlobRequest{InstanceName: "team-a", Uris: []string{"urn:through-the-front"}})
	if err != nil || resp.GetBlobDigest().GetHash() != d.Hash() {
		t.Fatalf("team-a fetching the pushed record: %v, %v", resp, err)
	}
	push.Uris = []string{"urn:not-allowed"}
	_, err = rapb.NewPushClient(ci).PushBlob(t.Context(), push)
	wantCode(t, err, codes.PermissionDenied, "team-a's ci (no ac-write) pushing through the front", "ac-write")
}

// A tenant's calls through the front count as that tenant's at storage:
// while team-a holds its half of storage's download slots with two slow
// fetches, its third waits for one of its own, and team-b's fetch goes
// ahead. Before, every tenant's call through the front was the
// scheduler's at storage, with one share for them all: team-a's two slow
// fetches held every other tenant's downloads back.
func TestTenantsCallsThroughTheFrontCountAsTheirs(t *testing.T) {
	sf := startSplitFarm(t)
	a, b := sf.dial(t, sf.frontAddr, tokenA), sf.dial(t, sf.frontAddr, tokenB)
	sf.holdDownloads(t, a, "team-a", asset.MaxDownloads/2)
	_, err := sf.fetch(t.Context(), a, "team-a", "/fast/team-a-3", 300*time.Millisecond)
	wantCode(t, err, codes.DeadlineExceeded, "team-a's third download, its two slots taken")
	resp, err := sf.fetch(t.Context(), b, "team-b", "/fast/team-b-1", 10*time.Second)
	wantFetched(t, "team-b's download while team-a holds its slots", resp, err, "team-b-1")
}

// Only a scheduler's header names whose call it is. A scheduler acts as
// the tenant it names, on that tenant's instance names only, and an
// unknown tenant is refused; a worker naming a tenant is still a worker
// (it may not push, and its downloads are not the tenant's), a client
// naming another tenant is still itself, and the header a client sends
// the front is not passed on.
func TestOnlySchedulersActForTenants(t *testing.T) {
	sf := startSplitFarm(t)
	sched, worker := sf.dial(t, sf.storageAddr, tokenScheduler), sf.dial(t, sf.storageAddr, tokenWorker)
	blob := []byte("stored by a worker")
	d := digest.FromBytes(repb.DigestFunction_SHA256, blob)
	if _, err := repb.NewContentAddressableStorageClient(worker).BatchUpdateBlobs(t.Context(), &repb.BatchUpdateBlobsRequest{InstanceName: "team-a",
		Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: d.Proto(), Data: blob}}}); err != nil {
		t.Fatal(err)
	}
	push := func(conn grpcConn, ctx context.Context, instance string) error {
		_, err := rapb.NewPushClient(conn).PushBlob(ctx, &rapb.PushBlobRequest{InstanceName: instance, Uris: []string{"urn:" + instance}, BlobDigest: d.Proto()})
		return err
	}
	if err := push(sched, onBehalfOf(t.Context(), "team-a"), "team-a"); err != nil {
		t.Fatalf("the scheduler pushing for team-a: %v", err)
	}
	wantCode(t, push(sched, t.Context(), "team-a"), codes.PermissionDenied, "the scheduler pushing for no tenant", "worker identities")
	wantCode(t, push(sched, onBehalfOf(t.Context(), "team-a"), "team-b"), codes.PermissionDenied, "the scheduler for team-a pushing on team-b", `"team-b"`)
	wantCode(t, push(sched, onBehalfOf(t.Context(), "nobody"), "team-a"), codes.PermissionDenied, "the scheduler for an unknown tenant", auth.OnBehalfOfHeader)
	wantCode(t, push(worker, onBehalfOf(t.Context(), "team-a"), "team-a"), codes.PermissionDenied, "a worker naming team-a pushing", "worker identities")
	wantCode(t, findMissing(onBehalfOf(t.Context(), "team-a"), sf.dial(t, sf.storageAddr, tokenB), "team-a"), codes.PermissionDenied,
		"team-b naming team-a, straight to storage", `"team-a"`)

	a := sf.dial(t, sf.frontAddr, tokenA)
	sf.holdDownloads(t, a, "team-a", asset.MaxDownloads/2)
	resp, err := sf.fetch(onBehalfOf(t.Context(), "team-a"), worker, "team-a", "/fast/worker", 10*time.Second)
	wantFetched(t, "a worker naming team-a, while team-a holds its slots", resp, err, "worker")
	resp, err = sf.fetch(onBehalfOf(t.Context(), "team-a"), sf.dial(t, sf.storageAddr, tokenB), "team-b", "/fast/team-b", 10*time.Second)
	wantFetched(t, "team-b naming team-a, while team-a holds its slots", resp, err, "team-b")
	_, err = sf.fetch(onBehalfOf(t.Context(), "team-b"), a, "team-a", "/fast/team-a-3", 300*time.Millisecond)
	wantCode(t, err, codes.DeadlineExceeded, "team-a naming team-b to the front, its two slots taken")
}
