package storage_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/storage"
)

// startTreeServer serves cas on loopback, a stream's tenant being what
// its client puts in the tenantKey metadata (tenantFromMetadata); it
// returns the server and its address.
func startTreeServer(t *testing.T, cas storage.BlobStore) (*storage.Server, string) {
	t.Helper()
	srv := storage.NewServer(storage.ServerOptions{CAS: cas})
	t.Cleanup(srv.Close)
	return srv, grpctest.Listen(t, srv.Register, append(srv.GRPCServerOptions(), grpc.ChainStreamInterceptor(tenantFromMetadata))...)
}

// unreadTree stores in cas a tree of 100 directories of 44 KB each
// under its root, 4.4 MB, read a page of one directory at a time: far
// more than the 64 KiB windows of dialUnread's streams.
func unreadTree(t *testing.T, cas storage.BlobStore) digest.Digest {
	t.Helper()
	root := &repb.Directory{}
	for i := range 100 {
		dir := &repb.Directory{}
		for j := range 300 {
			dir.Files = append(dir.Files, &repb.FileNode{Name: fmt.Sprintf("%060d-%03d-%03d", 0, i, j), Digest: sha("f").Proto()})
		}
		root.Directories = append(root.Directories, &repb.DirectoryNode{Name: fmt.Sprintf("d%03d", i), Digest: putProto(t, cas, dir).Proto()})
	}
	return putProto(t, cas, root)
}

// dialUnread is a client connection whose streams' flow-control windows
// stay at 64 KiB, the least HTTP/2 allows, as a client that never reads
// would keep them: a GetTree of unreadTree on it that the client does not
// read has its next page wait to be sent after a few.
func dialUnread(t *testing.T, addr string) repb.ContentAddressableStorageClient {
	t.Helper()
	return repb.NewContentAddressableStorageClient(grpctest.Dial(t, addr, grpc.WithStaticStreamWindowSize(64<<10)))
}

// waitTreeCalls waits (30 s at most) until srv's GetTree calls holding a
// slot and waiting for one are n in all.
func waitTreeCalls(t *testing.T, srv *storage.Server, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		holding, waiting := storage.TreeCalls(srv)
		if holding+waiting == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GetTree calls: %d holding a slot, %d waiting; want %d in all", holding, waiting, n)
		}
		time.Sleep(5 * time.Millisecond) // poll
	}
}

// holdUnreadGetTrees starts n GetTree calls of big in ctx on one dialUnread
// connection, never read, and waits until each holds a slot or waits for
// one: calls that keep their slots, beside which others want a turn.
func holdUnreadGetTrees(t *testing.T, ctx context.Context, srv *storage.Server, addr string, big digest.Digest, n int) {
	t.Helper()
	unread := dialUnread(t, addr)
	for range n {
		if _, err := unread.GetTree(ctx, &repb.GetTreeRequest{RootDigest: big.Proto(), PageSize: 1}); err != nil {
			t.Fatal(err)
		}
	}
	waitTreeCalls(t, srv, n)
}

// TestATenantsUnreadGetTreeCallsLeaveOthersTheirTurn: one tenant of the
// policy holds at most half the GetTree calls in progress, so calls it
// never reads, which hold their slots while their pages wait, leave the
// other tenants slots of their own. Before, one tenant's eight calls it
// never read held every slot, and every other tenant's GetTree waited
// out its deadline (DEADLINE_EXCEEDED) for as long as the calls stayed
// open.
func TestATenantsUnreadGetTreeCallsLeaveOthersTheirTurn(t *testing.T) {
	cas := storage.NewMemoryBlobStore()
	big := unreadTree(t, cas)
	small := wideTree(t, cas, "small", 1, 1)
	srv, addr := startTreeServer(t, cas)
	n := storage.TreeCallSlots()
	holdUnreadGetTrees(t, asTenant(t.Context(), "c"), srv, addr, big, n)
	ctx, cancel := context.WithTimeout(asTenant(t.Context(), "b"), 30*time.Second)
	defer cancel()
	ts := &testServer{cas: repb.NewContentAddressableStorageClient(grpctest.Dial(t, addr))}
	if all, err := recvTree(ctx, ts, &repb.GetTreeRequest{RootDigest: small.Proto()}); err != nil || len(all) != 1 || len(all[0].Directories) != 3 {
		t.Fatalf("tenant b's GetTree beside %d of tenant c's it does not read: %v, %v", n, all, err)
	}
}

// TestUnreadGetTreePagesEndTheCall: a GetTree page waits a bounded time
// for its client to read (here 300 ms); past it the call ends with
// RESOURCE_EXHAUSTED and frees its slot. Before, a call whose client never
// read held its slot for as long as the client kept the connection, and
// calls that held every slot kept every other GetTree waiting, tenant or
// none.
func TestUnreadGetTreePagesEndTheCall(t *testing.T) {
	cas := storage.NewMemoryBlobStore()
	big := unreadTree(t, cas)
	small := wideTree(t, cas, "small", 1, 1)
	srv, addr := startTreeServer(t, cas)
	const wait = 300 * time.Millisecond
	storage.SetTreePageWait(srv, wait)
	unread := dialUnread(t, addr)
	var stalled []repb.ContentAddressableStorage_GetTreeClient
	for range storage.TreeCallSlots() {
		stream, err := unread.GetTree(t.Context(), &repb.GetTreeRequest{RootDigest: big.Proto(), PageSize: 1})
		if err == nil {
			_, err = stream.Recv() // it holds a slot; no more is read until the end
		}
		if err != nil {
			t.Fatal(err)
		}
		stalled = append(stalled, stream)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	ts := &testServer{cas: repb.NewContentAddressableStorageClient(grpctest.Dial(t, addr))}
	if all, err := recvTree(ctx, ts, &repb.GetTreeRequest{RootDigest: small.Proto()}); err != nil || len(all) != 1 || len(all[0].Directories) != 3 {
		t.Fatalf("a GetTree beside calls holding every slot whose client does not read: %v, %v", all, err)
	}
	waitTreeCalls(t, srv, 0)
	for i, stream := range stalled {
		var err error
		for err == nil {
			_, err = stream.Recv()
		}
		if errors.Is(err, io.EOF) {
			t.Fatalf("unread GetTree %d ran to its end; want it ended when a page waited %v", i, wait)
		}
		wantStatus(t, err, codes.ResourceExhausted, "GetTree page waited "+wait.String(), "for the client to read")
	}
}
