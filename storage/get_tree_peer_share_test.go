package storage_test

import (
	"context"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/storage"
)

// TestWithoutTenantsAConnectionsGetTreeCallsLeaveOthersTheirTurn: with no
// tenant (no auth policy), each connection holds at most half the GetTree
// calls in progress, so one client's 40 full-tree calls, here never read
// so that they hold their slots, leave another client on its own
// connection a slot for its one-directory GetTree. Before, calls without
// a tenant were one sharer: the first client's calls held every slot,
// and the second's waited out its deadline (DEADLINE_EXCEEDED).
func TestWithoutTenantsAConnectionsGetTreeCallsLeaveOthersTheirTurn(t *testing.T) {
	cas := storage.NewMemoryBlobStore()
	big := unreadTree(t, cas)
	small := wideTree(t, cas, "small", 1, 1)
	srv, addr := startTreeServer(t, cas)
	const calls = 40
	holdUnreadGetTrees(t, t.Context(), srv, addr, big, calls)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	other := &testServer{cas: repb.NewContentAddressableStorageClient(grpctest.Dial(t, addr))}
	if all, err := recvTree(ctx, other, &repb.GetTreeRequest{RootDigest: small.Proto()}); err != nil || len(all) != 1 || len(all[0].Directories) != 3 {
		t.Fatalf("a second client's GetTree beside %d of the first's it does not read: %v, %v", calls, all, err)
	}
	if holding, _ := storage.TreeCalls(srv); holding > storage.TreeCallSlots()/2 {
		t.Fatalf("the first client's calls hold %d slots of %d; want at most half", holding, storage.TreeCallSlots())
	}
}
