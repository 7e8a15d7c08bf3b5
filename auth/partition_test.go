package auth_test

import (
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/farmtest"
)

// TestTenantPartitions: a blob team-a stored is missing for team-b, for
// FindMissingBlobs, BatchReadBlobs and ByteStream alike; and when both run
// actions with the same input file, their input roots do not share the
// file's inode (no hard link crosses partitions).
func TestTenantPartitions(t *testing.T) {
	sf := startSecureFarm(t)
	a, b := sf.dial(t, tokenA, nil), sf.dial(t, tokenB, nil)
	secret := []byte("team-a's secret input")
	d := digest.FromBytes(repb.DigestFunction_SHA256, secret)
	_, err := repb.NewContentAddressableStorageClient(a).BatchUpdateBlobs(t.Context(), &repb.BatchUpdateBlobsRequest{
		InstanceName: "team-a", Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: d.Proto(), Data: secret}}})
	if err != nil {
		t.Fatal(err)
	}
	missing := func(conn grpcConn, instance string) bool {
		t.Helper()
		r, err := repb.NewContentAddressableStorageClient(conn).FindMissingBlobs(t.Context(), &repb.FindMissingBlobsRequest{InstanceName: instance, BlobDigests: []*repb.Digest{d.Proto()}})
		if err != nil {
			t.Fatal(err)
		}
		return len(r.MissingBlobDigests) == 1
	}
	if missing(a, "team-a") || missing(a, "team-a/sub") {
		t.Fatal("team-a does not see its own blob")
	}
	if !missing(b, "team-b") {
		t.Fatal("team-b sees team-a's blob in FindMissingBlobs")
	}
	r, err := repb.NewContentAddressableStorageClient(b).BatchReadBlobs(t.Context(), &repb.BatchReadBlobsRequest{InstanceName: "team-b", Digests: []*repb.Digest{d.Proto()}})
	if err != nil || len(r.Responses) != 1 || codes.Code(r.Responses[0].Status.GetCode()) != codes.NotFound {
		t.Fatalf("team-b's BatchReadBlobs of team-a's blob: %v, %v; want NOT_FOUND", r, err)
	}
	rs, err := sf.dialByteStream(t, tokenB).Read(t.Context(), bsReadOf("team-b", d))
	if err == nil {
		_, err = rs.Recv()
	}
	wantCode(t, err, codes.NotFound, "team-b's ByteStream Read of team-a's blob")

	// The same input file for both tenants: separate inodes.
	var mu sync.Mutex
	var inodes []uint64
	sf.Runner.Before = func(root string) {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(root, "in.txt"), &st); err != nil {
			t.Errorf("input root: %v", err)
		}
		mu.Lock()
		inodes = append(inodes, st.Ino)
		mu.Unlock()
	}
	input := []byte("an input both tenants have")
	for i, run := range []struct {
		conn     grpcConn
		instance string
	}{{a, "team-a"}, {a, "team-a"}, {b, "team-b"}} {
		ad := farmtest.UploadAction(t, run.conn.(*grpcClientConn), run.instance, input, "/bin/true", "run", string(rune('0'+i)))
		if _, err := execOnce(t, run.conn, run.instance, ad); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the action to run", func() bool { mu.Lock(); defer mu.Unlock(); return len(inodes) > i })
	}
	// (Two actions of one tenant may or may not share the inode: the file
	// cache fetches an entry again when its ctime moved, which a new link
	// does. worker's TestFileCachePartitions checks the links themselves.)
	if inodes[2] == inodes[0] || inodes[2] == inodes[1] {
		t.Errorf("team-b's input root shares an inode with team-a's (%v): a hard link crosses partitions", inodes)
	}
}
