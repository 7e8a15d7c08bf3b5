package scheduler

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (mounts a small tmpfs)")
	}
}

// When the journal's disk fills up, Execute is refused with UNAVAILABLE (a
// message without host paths), and operations accepted before still
// complete for their clients.
func TestFullJournalDiskRefusesNewWorkAndFinishesTheRest(t *testing.T) {
	requireRoot(t)
	dir := filepath.Join(t.TempDir(), "journal")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatalf("mount a small tmpfs: %v", err)
	}
	cfg := testConfig()
	cfg.JournalDir = dir
	f := startFarm(t, cfg, "", nil, nil)
	t.Cleanup(func() {
		f.stop()
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	ctx := ctxTimeout(t)
	var accepted []string
	var refused error
	for i := 0; i < 2000 && refused == nil; i++ {
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := f.exec.Execute(sctx, executeRequest(f.action(t, fmt.Sprint("full-", i), nil)))
		if err != nil {
			t.Fatal(err)
		}
		op, err := stream.Recv()
		if err != nil {
			refused = err
			break
		}
		accepted = append(accepted, op.Name)
	}
	if status.Code(refused) != codes.Unavailable || strings.Contains(status.Convert(refused).Message(), dir) {
		t.Fatalf("after %d accepted Executes: %v, want UNAVAILABLE without the journal's path", len(accepted), refused)
	}
	if len(accepted) == 0 {
		t.Fatal("nothing was accepted before the disk filled up")
	}
	startTestWorker(t, f.addr, "w", 4, okRun("w"))
	for _, name := range accepted {
		ops, err := collect(must(f.exec.WaitExecution(ctx, &repb.WaitExecutionRequest{Name: name})))
		if err != nil {
			t.Fatalf("WaitExecution(%s) after the journal failed: %v", name, err)
		}
		if resp := responseOf(t, ops[len(ops)-1]); resp.GetStatus().GetCode() != 0 {
			t.Fatalf("%s: %v", name, resp)
		}
	}
	t.Logf("%d Executes accepted before the journal's disk filled up, then: %v", len(accepted), refused)
}
