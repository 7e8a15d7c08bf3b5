package auth_test

import (
	"context"
	"crypto/sha256"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/auth"
	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/farmtest"
	"github.com/paddock-build/paddock/internal/testpki"
)

// Tokens of the test policy: each names who holds it.
const (
	tokenA      = "team-a-token"
	tokenAReady = "team-a-read-only"
	tokenAWrite = "team-a-cache-writer"
	tokenB      = "team-b-token"
	tokenAdmin  = "ops-admin-token"
	tokenWorker = "worker-token"
)

func hashOf(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// testPolicy is two tenants, an admin, and workers known by token and by
// SPIFFE ID.
func testPolicy() string {
	return fmt.Sprintf(`tenants:
  - name: team-a
    instance_prefixes: [team-a]
    identities:
      - {name: ci, token_sha256: %s, permissions: [cas-read, cas-write, ac-read, execute]}
      - {name: reader, token_sha256: %s, permissions: [cas-read, ac-read]}
      - {name: writer, token_sha256: %s, permissions: [cas-read, cas-write, ac-read, ac-write]}
      - {name: alice, certificate: "CN=alice,O=team-a", permissions: [cas-read, cas-write, ac-read, execute]}
  - name: team-b
    instance_prefixes: [team-b]
    identities:
      - {name: ci, token_sha256: %s, permissions: [cas-read, cas-write, ac-read, execute]}
  - name: ops
    instance_prefixes: [ops]
    identities:
      - {name: admin, token_sha256: %s, permissions: [admin]}
workers:
  - {name: by-token, token_sha256: %s}
  - {name: by-cert, certificate: "spiffe://farm.test/worker"}
`, hashOf(tokenA), hashOf(tokenAReady), hashOf(tokenAWrite), hashOf(tokenB), hashOf(tokenAdmin), hashOf(tokenWorker))
}

// secureFarm is an in-process farm behind TLS and the test policy; its
// worker connects with the worker certificate.
type secureFarm struct {
	*farmtest.Farm
	ca    *testpki.CA
	alice testpki.Pair
	wcert testpki.Pair
}

func startSecureFarm(t *testing.T) *secureFarm {
	t.Helper()
	return startSecureFarmWith(t, testPolicy())
}

// startSecureFarmWith is startSecureFarm under another policy text, with
// the scheduler given that policy's tenant limits.
func startSecureFarmWith(t *testing.T, policyText string) *secureFarm {
	t.Helper()
	return startSecureFarmOpts(t, policyText, secureOptions{})
}

// secureOptions are a test's own options of a secure farm.
type secureOptions struct {
	// farm's policy and TLS parts are set by startSecureFarmOpts.
	farm farmtest.Options
	// tenantCalls, if not 0, is each tenant's bound on calls in progress
	// (Interceptors.LimitTenantCalls).
	tenantCalls int
}

// startSecureFarmOpts is startSecureFarmWith with options of the test's
// own.
func startSecureFarmOpts(t *testing.T, policyText string, so secureOptions) *secureFarm {
	t.Helper()
	ca := testpki.NewCA(t, "farm-ca")
	server := ca.Server("server")
	sf := &secureFarm{ca: ca,
		alice: ca.Client("alice", pkix.Name{CommonName: "alice", Organization: []string{"team-a"}}, ""),
		wcert: ca.Client("worker", pkix.Name{CommonName: "worker"}, "spiffe://farm.test/worker"),
	}
	policy := farmtest.Policy(t, policyText)
	stls, err := auth.ServerTLS(auth.TLSFiles{Cert: server.Cert, Key: server.Key, CA: ca.Cert}, nil)
	if err != nil {
		t.Fatal(err)
	}
	opts := append(auth.NewInterceptors(policy, nil).LimitTenantCalls(so.tenantCalls).ServerOptions(), grpc.Creds(credentials.NewTLS(stls)))
	fo := so.farm
	fo.ServerOptions, fo.Dial, fo.PartitionOf, fo.TenantLimits = opts, sf.dialOpts(t, "", &sf.wcert), policy.PartitionOf, policy.TenantLimits()
	sf.Farm = farmtest.Start(t, fo)
	return sf
}

// dialOpts are TLS options trusting the farm's CA, with a bearer token
// and a client certificate when given.
func (sf *secureFarm) dialOpts(t *testing.T, token string, cert *testpki.Pair) []grpc.DialOption {
	t.Helper()
	files := auth.TLSFiles{CA: sf.ca.Cert}
	if cert != nil {
		files.Cert, files.Key = cert.Cert, cert.Key
	}
	cfg, err := auth.ClientTLS(files, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(cfg))}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(auth.NewTokenCredentials(token)))
	}
	return opts
}

// dial connects to the farm as the holder of token and/or cert.
func (sf *secureFarm) dial(t *testing.T, token string, cert *testpki.Pair) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(sf.Addr, sf.dialOpts(t, token, cert)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// wantCode fails unless err has code and its message contains every
// fragment.
func wantCode(t *testing.T, err error, code codes.Code, what string, fragments ...string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code {
		t.Fatalf("%s: %v, want %s", what, err, code)
	}
	for _, f := range fragments {
		if !strings.Contains(st.Message(), f) {
			t.Fatalf("%s: message %q does not name %q", what, st.Message(), f)
		}
	}
}

// waitFor polls cond until it holds, for at most 30 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type grpcConn = grpc.ClientConnInterface

func (sf *secureFarm) dialByteStream(t *testing.T, token string) bytestream.ByteStreamClient {
	return bytestream.NewByteStreamClient(sf.dial(t, token, nil))
}

// bsRead reads the empty blob of instance.
func bsRead(instance string) *bytestream.ReadRequest {
	e := digest.Empty(repb.DigestFunction_SHA256)
	return &bytestream.ReadRequest{ResourceName: instance + "/blobs/" + e.Hash() + "/0"}
}

// loadTestPolicy compiles testPolicy.
func loadTestPolicy(t testing.TB) *auth.Policy {
	t.Helper()
	return farmtest.Policy(t, testPolicy())
}

// insecureToken sends a bearer token without TLS: for benchmarks that
// measure the policy and not TLS, on loopback only.
type insecureToken string

func (t insecureToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}

func (insecureToken) RequireTransportSecurity() bool { return false }

func incomingToken(token string) context.Context {
	return metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+token))
}

type grpcClientConn = grpc.ClientConn

// bsReadOf reads d on instance.
func bsReadOf(instance string, d digest.Digest) *bytestream.ReadRequest {
	return &bytestream.ReadRequest{ResourceName: fmt.Sprintf("%s/blobs/%s/%d", instance, d.Hash(), d.SizeBytes())}
}
