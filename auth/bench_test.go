package auth_test

import (
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/paddock-build/paddock/auth"
	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/farmtest"
)

// benchFarm is an in-process farm in plaintext on loopback, with the test
// policy or without any, and a client connection holding team-a's token.
// Plaintext, so that what is measured is the token check and the policy,
// not TLS (whose cost is per connection, not per call).
func benchFarm(b *testing.B, withPolicy bool) *grpc.ClientConn {
	b.Helper()
	var opts farmtest.Options
	dial := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if withPolicy {
		policy := loadTestPolicy(b)
		opts.ServerOptions = auth.NewInterceptors(policy, nil).ServerOptions()
		// The farm's worker and the client send a token over plaintext:
		// TokenCredentials refuses that, so the header goes as metadata.
		opts.Dial = append(dial, grpc.WithPerRPCCredentials(insecureToken(tokenWorker)))
		dial = append(dial, grpc.WithPerRPCCredentials(insecureToken(tokenA)))
	}
	f := farmtest.Start(b, opts)
	conn, err := grpc.NewClient(f.Addr, dial...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return conn
}

// BenchmarkFindMissingBlobs: one call with 16 digests, through the real
// gRPC stack on loopback, without and with authentication and the policy.
func BenchmarkFindMissingBlobs(b *testing.B) {
	for _, withPolicy := range []bool{false, true} {
		b.Run(map[bool]string{false: "open", true: "token+policy"}[withPolicy], func(b *testing.B) {
			conn := benchFarm(b, withPolicy)
			cas := repb.NewContentAddressableStorageClient(conn)
			req := &repb.FindMissingBlobsRequest{InstanceName: "team-a"}
			for i := range 16 {
				req.BlobDigests = append(req.BlobDigests, digest.FromBytes(repb.DigestFunction_SHA256, []byte{byte(i)}).Proto())
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := cas.FindMissingBlobs(b.Context(), req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkExecuteCached: an Execute answered from the action cache (the
// scheduler's lookup, the operation's creation and its one message), so
// the edge's share is as large as it gets for Execute.
func BenchmarkExecuteCached(b *testing.B) {
	for _, withPolicy := range []bool{false, true} {
		b.Run(map[bool]string{false: "open", true: "token+policy"}[withPolicy], func(b *testing.B) {
			conn := benchFarm(b, withPolicy)
			ad := farmtest.UploadAction(b, conn, "team-a", nil, "/bin/true")
			exec := repb.NewExecutionClient(conn)
			run := func() {
				s, err := exec.Execute(b.Context(), &repb.ExecuteRequest{InstanceName: "team-a", ActionDigest: ad.Proto()})
				if err != nil {
					b.Fatal(err)
				}
				for {
					op, err := s.Recv()
					if err != nil {
						b.Fatal(err)
					}
					if op.Done {
						return
					}
				}
			}
			run() // executes it once; every later call is a cache hit
			b.ReportAllocs()
			for b.Loop() {
				run()
			}
		})
	}
}

// BenchmarkAuthenticate: the token check and the decision alone.
func BenchmarkAuthenticate(b *testing.B) {
	policy := loadTestPolicy(b)
	ctx := incomingToken(tokenA)
	b.ReportAllocs()
	for b.Loop() {
		pr, err := policy.Authenticate(ctx)
		if err != nil || !pr.Allowed(auth.CASRead, "team-a/x") {
			b.Fatal(err)
		}
	}
}
