package auth_test

import (
	"context"
	"testing"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/paddock-build/paddock/auth"
	"github.com/paddock-build/paddock/internal/grpclimit"
	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/storage"
)

const (
	findMissingMethod = "/build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs"
	healthCheck       = "/grpc.health.v1.Health/Check"
)

// admittedServer is storage's services and health behind the test policy
// as a role serves them: the interceptors, with a share of calls per
// tenant, and a bound on calls whose tap admits each stream first
// (Interceptors.Admit through grpclimit.WithAdmission). Plaintext, so
// that tokens go with insecureToken.
type admittedServer struct {
	addr    string
	limiter *grpclimit.Limiter
	ic      *auth.Interceptors
}

func startAdmittedServer(t *testing.T, bound, tenantCalls int) *admittedServer {
	t.Helper()
	srv := storage.NewServer(storage.ServerOptions{CAS: storage.NewMemoryBlobStore(), AC: storage.NewMemoryActionCache()})
	t.Cleanup(srv.Close)
	return startAdmittedServerOf(t, bound, tenantCalls, srv.Register)
}

// startAdmittedServerOf is startAdmittedServer serving the services
// register adds (and health) instead of storage's.
func startAdmittedServerOf(t *testing.T, bound, tenantCalls int, register func(*grpc.Server)) *admittedServer {
	t.Helper()
	ic := auth.NewInterceptors(loadTestPolicy(t), nil).LimitTenantCalls(tenantCalls)
	opts := append(ic.ServerOptions(), grpclimit.WithAdmission(ic.Admit))
	s := &admittedServer{limiter: grpclimit.New(bound), ic: ic}
	s.addr = grpctest.Listen(t, func(g *grpc.Server) {
		register(g)
		healthpb.RegisterHealthServer(g, health.NewServer())
	}, append(opts, s.limiter.ServerOptions(opts...)...)...)
	return s
}

// dial connects with token as the bearer token; none when "".
func (s *admittedServer) dial(t *testing.T, token string) *grpc.ClientConn {
	t.Helper()
	if token == "" {
		return grpctest.Dial(t, s.addr)
	}
	return grpctest.Dial(t, s.addr, grpc.WithPerRPCCredentials(insecureToken(token)))
}

// openHeaderOnly starts n calls of the unary method on conn and sends
// their headers only, never a request, as a client that stalls them; each
// channel gets the error its call ends with.
func openHeaderOnly(t *testing.T, ctx context.Context, conn *grpc.ClientConn, method string, n int) []chan error {
	t.Helper()
	ended := make([]chan error, n)
	for i := range ended {
		ended[i] = make(chan error, 1)
		s, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method)
		if err != nil {
			ended[i] <- err
			continue
		}
		go func() { ended[i] <- s.RecvMsg(&emptypb.Empty{}) }()
	}
	return ended
}

// findMissing is one FindMissingBlobs on instance.
func findMissing(ctx context.Context, conn grpcConn, instance string) error {
	_, err := repb.NewContentAddressableStorageClient(conn).FindMissingBlobs(ctx,
		&repb.FindMissingBlobsRequest{InstanceName: instance, BlobDigests: []*repb.Digest{digestProtoOf("x")}})
	return err
}

// A client without credentials that opens thousands of calls and sends
// only their headers is refused UNAUTHENTICATED from the headers, before
// anything is read or counted, and the tenants' calls go on. Before,
// each such call held a call of the server's bound until the request
// timeout (2 minutes) closed the connection, and the client reconnected:
// every tenant was refused RESOURCE_EXHAUSTED as long as it liked.
func TestUnauthenticatedCallsAreRefusedFromTheirHeaders(t *testing.T) {
	s := startAdmittedServer(t, 1000, 500)
	anonymous := s.dial(t, "")
	ended := openHeaderOnly(t, t.Context(), anonymous, findMissingMethod, 2000)
	// The server reads a connection's headers in order: once this is
	// answered, it has seen every call above.
	if _, err := healthpb.NewHealthClient(anonymous).Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("a health check after the stalled calls: %v", err)
	}
	if err := findMissing(t.Context(), s.dial(t, tokenB), "team-b"); err != nil {
		t.Fatalf("team-b's call while the client keeps 2,000 stalled calls: %v", err)
	}
	deadline := time.After(10 * time.Second)
	for i, e := range ended {
		select {
		case err := <-e:
			wantCode(t, err, codes.Unauthenticated, "a stalled call without credentials", "no credentials")
		case <-deadline:
			t.Fatalf("stalled call %d without credentials: not refused within 10 s; %d calls counted", i, s.limiter.Active())
		}
	}
}

// A tenant's calls count in its share from their headers on, so calls it
// stalls before sending their requests are capped at its share, and the
// other tenants' calls go on. Before, the share was taken only once a
// unary call's request had arrived: the tenant held the server's whole
// bound with stalled calls. The share comes back when a call ends, even
// one that no handler served.
func TestATenantsStalledCallsStopAtItsShare(t *testing.T) {
	s := startAdmittedServer(t, 20, 10)
	a := s.dial(t, tokenA)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ended := openHeaderOnly(t, ctx, a, findMissingMethod, 30)
	// Read by the server after the stalled calls' headers (same
	// connection), so past the share.
	wantCode(t, findMissing(t.Context(), a, "team-a"), codes.ResourceExhausted, "team-a's call beside 30 stalled ones", `tenant "team-a"`)
	refused := 0
	for refused < 20 {
		select {
		case err := <-ended[10+refused]:
			wantCode(t, err, codes.ResourceExhausted, "a stalled call past team-a's share", `tenant "team-a"`)
			refused++
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d of team-a's stalled calls past its share were refused", refused)
		}
	}
	for i := range 3 {
		if err := findMissing(t.Context(), s.dial(t, tokenB), "team-b"); err != nil {
			t.Fatalf("team-b's call %d while team-a stalls its share: %v", i, err)
		}
	}
	cancel()
	waitFor(t, "team-a's share to come back", func() bool { return findMissing(t.Context(), a, "team-a") == nil })
	// A method of the rules this server does not serve: grpc-go answers
	// it without a handler, and the share still comes back each time.
	ops := longrunningpb.NewOperationsClient(a)
	for i := range 25 {
		_, err := ops.GetOperation(t.Context(), &longrunningpb.GetOperationRequest{Name: "x"})
		if status.Code(err) != codes.Unimplemented {
			t.Fatalf("team-a's call %d of a method this server does not serve: %v; want UNIMPLEMENTED", i, err)
		}
	}
	if err := findMissing(t.Context(), a, "team-a"); err != nil {
		t.Fatalf("team-a's call after 25 unserved ones: %v", err)
	}
}

// Health Checks need no credentials and are never refused by the
// server's bound, but they are calls too: a client can open them and
// never send their requests. Each connection's Checks in progress are
// bounded (16), and no more, so that a probe on a connection of its own
// is never refused: one anonymous connection stalls 1,100 Checks, and
// Checks on other connections, Watch and the tenants' calls go on, while
// that connection's Checks past 16 are refused. Before, Checks had one
// bound for the server (1,024): the stalled Checks held it until the
// request timeout (2 minutes), every kubelet probe was refused, and the
// pods were restarted. When the stalled Checks end, their counts go, and
// no connection's count stays behind.
func TestStalledHealthChecksAreBoundedPerConnection(t *testing.T) {
	const stalled, perConnection = 1100, 16
	s := startAdmittedServer(t, 4000, 2000)
	anonymous := s.dial(t, "")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ended := openHeaderOnly(t, ctx, anonymous, healthCheck, stalled)
	// The Checks that are held do not end: wait for the others.
	refused := 0
	for deadline := time.Now().Add(10 * time.Second); refused < stalled-perConnection && time.Now().Before(deadline); {
		for i, e := range ended {
			select {
			case err := <-e:
				wantCode(t, err, codes.ResourceExhausted, "a stalled Check past its connection's bound", "on this connection")
				refused++
				ended[i] = nil
			default:
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := range 3 {
		if _, err := healthpb.NewHealthClient(s.dial(t, "")).Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("a probe's Check %d on a connection of its own, beside %d stalled Checks on another: %v", i, stalled, err)
		}
	}
	if refused != stalled-perConnection {
		t.Fatalf("%d of %d stalled Checks on one connection were refused, want %d", refused, stalled, stalled-perConnection)
	}
	_, err := healthpb.NewHealthClient(anonymous).Check(t.Context(), &healthpb.HealthCheckRequest{})
	wantCode(t, err, codes.ResourceExhausted, "a Check on the connection holding 16 stalled ones", "on this connection")
	if err := findMissing(t.Context(), s.dial(t, tokenB), "team-b"); err != nil {
		t.Fatalf("team-b's call beside %d stalled Checks: %v", stalled, err)
	}
	w, err := healthpb.NewHealthClient(s.dial(t, "")).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err == nil {
		_, err = w.Recv()
	}
	if err != nil {
		t.Fatalf("a health Watch while a connection holds stalled Checks: %v", err)
	}
	// The stalled connection's Checks and the Watch: one count each.
	waitFor(t, "the ended probes' counts to go", func() bool { return auth.OpenParties(s.ic) == 2 })
	cancel()
	waitFor(t, "the stalled Checks' counts to go", func() bool { return auth.OpenParties(s.ic) == 0 })
	if _, err := healthpb.NewHealthClient(anonymous).Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("a Check on the connection whose stalled Checks ended: %v", err)
	}
}
