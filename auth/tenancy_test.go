package auth_test

import (
	"io"
	"sync"
	"testing"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/farmtest"
)

// TestCredentialsOverTLS: over real TLS on loopback, no token or a wrong
// one is UNAUTHENTICATED, a good token without the permission is
// PERMISSION_DENIED naming it, and certificates identify their holders.
func TestCredentialsOverTLS(t *testing.T) {
	sf := startSecureFarm(t)
	find := func(token string, cert bool, instance string) error {
		var c = sf.dial(t, token, nil)
		if cert {
			c = sf.dial(t, token, &sf.alice)
		}
		_, err := repb.NewContentAddressableStorageClient(c).FindMissingBlobs(t.Context(), &repb.FindMissingBlobsRequest{InstanceName: instance})
		return err
	}
	wantCode(t, find("", false, "team-a"), codes.Unauthenticated, "no credentials", "no credentials")
	wantCode(t, find("not-a-token", false, "team-a"), codes.Unauthenticated, "unknown token", "not valid")
	// A token that is sent must be good even when a good certificate is too.
	wantCode(t, find("not-a-token", true, "team-a"), codes.Unauthenticated, "bad token with a good certificate")
	if err := find(tokenA, false, "team-a"); err != nil {
		t.Errorf("team-a's token on team-a: %v", err)
	}
	if err := find(tokenA, false, "team-a/sub/dir"); err != nil {
		t.Errorf("team-a's token under team-a/: %v", err)
	}
	wantCode(t, find(tokenA, false, "team-ab"), codes.PermissionDenied, "team-a's token on team-ab", "cas-read", `"team-ab"`)
	if err := find("", true, "team-a"); err != nil {
		t.Errorf("alice's certificate on team-a: %v", err)
	}
	// The admin holds no cas-read anywhere.
	wantCode(t, find(tokenAdmin, false, "ops"), codes.PermissionDenied, "admin token reading the CAS", "cas-read")

	// A read-only token reads the action cache but cannot write the CAS.
	ro := sf.dial(t, tokenAReady, nil)
	_, err := repb.NewContentAddressableStorageClient(ro).BatchUpdateBlobs(t.Context(), &repb.BatchUpdateBlobsRequest{InstanceName: "team-a"})
	wantCode(t, err, codes.PermissionDenied, "read-only token writing", "cas-write")
	_, err = repb.NewActionCacheClient(ro).GetActionResult(t.Context(), &repb.GetActionResultRequest{InstanceName: "team-a", ActionDigest: digest.Empty(repb.DigestFunction_SHA256).Proto()})
	wantCode(t, err, codes.NotFound, "read-only token reading the action cache")
	// ByteStream: the instance is read from the resource name.
	rs, err := sf.dialByteStream(t, tokenB).Read(t.Context(), bsRead("team-a"))
	if err == nil {
		_, err = rs.Recv()
	}
	wantCode(t, err, codes.PermissionDenied, "team-b reading team-a's ByteStream", "cas-read", `"team-a"`)
}

// TestTenantsAreIsolated: B can neither read nor write A's action cache,
// nor see, wait on or cancel A's operations; and a client may not write
// any action cache entry unless granted ac-write.
func TestTenantsAreIsolated(t *testing.T) {
	sf := startSecureFarm(t)
	a, b := sf.dial(t, tokenA, nil), sf.dial(t, tokenB, nil)
	// A's action, held running until the test lets it finish.
	release := make(chan struct{})
	var once sync.Once
	running := make(chan struct{}, 1)
	sf.Runner.Before = func(string) {
		select {
		case running <- struct{}{}:
		default:
		}
		<-release
	}
	defer once.Do(func() { close(release) })
	ad := farmtest.UploadAction(t, a, "team-a", nil, "/bin/true")
	stream, err := repb.NewExecutionClient(a).Execute(t.Context(), &repb.ExecuteRequest{InstanceName: "team-a", ActionDigest: ad.Proto()})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	name := first.Name
	<-running

	// B: NOT_FOUND for every operation call, and an empty list.
	ops := longrunningpb.NewOperationsClient(b)
	_, err = ops.GetOperation(t.Context(), &longrunningpb.GetOperationRequest{Name: name})
	wantCode(t, err, codes.NotFound, "B's GetOperation of A's operation")
	_, err = ops.CancelOperation(t.Context(), &longrunningpb.CancelOperationRequest{Name: name})
	wantCode(t, err, codes.NotFound, "B's CancelOperation of A's operation")
	_, err = ops.DeleteOperation(t.Context(), &longrunningpb.DeleteOperationRequest{Name: name})
	wantCode(t, err, codes.NotFound, "B's DeleteOperation of A's operation")
	_, err = ops.WaitOperation(t.Context(), &longrunningpb.WaitOperationRequest{Name: name})
	wantCode(t, err, codes.NotFound, "B's WaitOperation of A's operation")
	ws, err := repb.NewExecutionClient(b).WaitExecution(t.Context(), &repb.WaitExecutionRequest{Name: name})
	if err == nil {
		_, err = ws.Recv()
	}
	wantCode(t, err, codes.NotFound, "B's WaitExecution of A's operation")
	list, err := ops.ListOperations(t.Context(), &longrunningpb.ListOperationsRequest{})
	if err != nil || len(list.Operations) != 0 {
		t.Fatalf("B's ListOperations = %v, %v; want none of A's", list, err)
	}
	// A sees its own.
	list, err = longrunningpb.NewOperationsClient(a).ListOperations(t.Context(), &longrunningpb.ListOperationsRequest{})
	if err != nil || len(list.Operations) != 1 || list.Operations[0].Name != name {
		t.Fatalf("A's ListOperations = %v, %v; want its one operation", list, err)
	}
	// B executing on A's instance is refused.
	_, err = execOnce(t, b, "team-a", ad)
	wantCode(t, err, codes.PermissionDenied, "B's Execute on team-a", "execute")

	once.Do(func() { close(release) })
	for {
		op, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		_ = op
	}
	// The result is in A's action cache. B cannot read it, nor write one.
	_, err = repb.NewActionCacheClient(a).GetActionResult(t.Context(), &repb.GetActionResultRequest{InstanceName: "team-a", ActionDigest: ad.Proto()})
	if err != nil {
		t.Fatalf("A's GetActionResult of its own result: %v", err)
	}
	_, err = repb.NewActionCacheClient(b).GetActionResult(t.Context(), &repb.GetActionResultRequest{InstanceName: "team-a", ActionDigest: ad.Proto()})
	wantCode(t, err, codes.PermissionDenied, "B reading A's action cache", "ac-read", `"team-a"`)
	forged := &repb.UpdateActionResultRequest{InstanceName: "team-a", ActionDigest: ad.Proto(), ActionResult: &repb.ActionResult{ExitCode: 0}}
	_, err = repb.NewActionCacheClient(b).UpdateActionResult(t.Context(), forged)
	wantCode(t, err, codes.PermissionDenied, "B writing A's action cache", "ac-write")
	// Nor may A's own CI token: ac-write is granted only when the policy says so.
	_, err = repb.NewActionCacheClient(a).UpdateActionResult(t.Context(), forged)
	wantCode(t, err, codes.PermissionDenied, "A's token without ac-write", "ac-write")
	// B reading A's operation after it completed: still NOT_FOUND.
	_, err = ops.GetOperation(t.Context(), &longrunningpb.GetOperationRequest{Name: name})
	wantCode(t, err, codes.NotFound, "B's GetOperation of A's completed operation")
}

// TestActionResultNeedsTheAction: even with ac-write, a result for an
// Action missing from the CAS is FAILED_PRECONDITION.
func TestActionResultNeedsTheAction(t *testing.T) {
	sf := startSecureFarm(t)
	w := sf.dial(t, tokenAWrite, nil)
	missing := digest.FromBytes(repb.DigestFunction_SHA256, []byte("no such action"))
	_, err := repb.NewActionCacheClient(w).UpdateActionResult(t.Context(), &repb.UpdateActionResultRequest{
		InstanceName: "team-a", ActionDigest: missing.Proto(), ActionResult: &repb.ActionResult{}})
	wantCode(t, err, codes.FailedPrecondition, "a result for a missing Action", "action_digest")
}

// TestOnlyWorkersRegister: without credentials, with a client's token, or
// with the admin's, the worker protocol is closed; a client token cannot
// drain a worker; the admin can.
func TestOnlyWorkersRegister(t *testing.T) {
	sf := startSecureFarm(t)
	connect := func(token string) error {
		s, err := workerpb.NewWorkerServiceClient(sf.dial(t, token, nil)).Connect(t.Context())
		if err != nil {
			return err
		}
		_ = s.Send(&workerpb.WorkerMessage{}) // io.EOF if already refused; Recv has the status
		_, err = s.Recv()
		return err
	}
	wantCode(t, connect(""), codes.Unauthenticated, "worker without credentials")
	wantCode(t, connect(tokenA), codes.PermissionDenied, "worker with a client token", "worker")
	wantCode(t, connect(tokenAdmin), codes.PermissionDenied, "worker with the admin token", "worker")

	_, err := workerpb.NewAdminServiceClient(sf.dial(t, tokenA, nil)).DrainWorker(t.Context(), &workerpb.DrainWorkerRequest{WorkerId: "farmtest"})
	wantCode(t, err, codes.PermissionDenied, "client token draining", "admin")
	_, err = workerpb.NewAdminServiceClient(sf.dial(t, tokenWorker, nil)).DrainWorker(t.Context(), &workerpb.DrainWorkerRequest{WorkerId: "farmtest"})
	wantCode(t, err, codes.PermissionDenied, "worker token draining", "admin")
	_, err = workerpb.NewAdminServiceClient(sf.dial(t, tokenA, nil)).UndrainWorker(t.Context(), &workerpb.UndrainWorkerRequest{WorkerId: "farmtest"})
	wantCode(t, err, codes.PermissionDenied, "client token undraining", "admin")
	admin := workerpb.NewAdminServiceClient(sf.dial(t, tokenAdmin, nil))
	// The farm's worker is connected with its certificate.
	waitFor(t, "the worker to connect with its certificate", func() bool {
		r, err := admin.ListWorkers(t.Context(), &workerpb.ListWorkersRequest{})
		return err == nil && len(r.Workers) == 1 && r.Workers[0].Connected
	})
	if _, err := admin.DrainWorker(t.Context(), &workerpb.DrainWorkerRequest{WorkerId: "farmtest"}); err != nil {
		t.Fatalf("admin draining: %v", err)
	}
	if _, err := admin.UndrainWorker(t.Context(), &workerpb.UndrainWorkerRequest{WorkerId: "farmtest"}); err != nil {
		t.Fatalf("admin undraining: %v", err)
	}
}

func execOnce(t *testing.T, conn grpcConn, instance string, ad digest.Digest) (*longrunningpb.Operation, error) {
	s, err := repb.NewExecutionClient(conn).Execute(t.Context(), &repb.ExecuteRequest{InstanceName: instance, ActionDigest: ad.Proto()})
	if err != nil {
		return nil, err
	}
	return s.Recv()
}
