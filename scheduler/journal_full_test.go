package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"syscall"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/internal/testdisk"
	"github.com/paddock-build/paddock/internal/testlog"
	"github.com/paddock-build/paddock/storage"
)

// smallJournalDir mounts a 64 KiB tmpfs for a journal, unmounted when
// the test ends (after the farm using it, started later, has stopped).
func smallJournalDir(t *testing.T) string {
	t.Helper()
	return testdisk.Mount(t, 64<<10, 0)
}

// fillJournal executes new actions on f until one is refused, and returns
// the names of those accepted and the refusal.
func fillJournal(ctx context.Context, t *testing.T, f *farm) (accepted []string, refused error) {
	t.Helper()
	for i := 0; i < 2000 && refused == nil; i++ {
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := f.exec.Execute(sctx, executeRequest(f.action(t, fmt.Sprint("full-", i), nil)))
		if err != nil {
			t.Fatal(err)
		}
		op, err := stream.Recv()
		if err != nil {
			return accepted, err
		}
		accepted = append(accepted, op.Name)
	}
	t.Fatalf("%d Executes accepted on a 64 KiB journal disk", len(accepted))
	return nil, nil
}

// When the journal's disk fills up, Execute is refused with UNAVAILABLE (a
// message without host paths), and operations accepted before still
// complete for their clients.
func TestFullJournalDiskRefusesNewWorkAndFinishesTheRest(t *testing.T) {
	dir := smallJournalDir(t)
	cfg := testConfig()
	cfg.JournalDir = dir
	f := startFarm(t, cfg, "", nil, nil)
	ctx := ctxTimeout(t)
	accepted, refused := fillJournal(ctx, t, f)
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

// A failed journal shows where an operator looks, since the scheduler
// refuses every new Execute until restarted: the gauge
// paddock_scheduler_journal_failed goes from 0 to 1, OnJournalFailed is
// called once with the cause (for the health checks), and the log says
// why once, at ERROR.
func TestFailedJournalShowsInMetricsAndCallsBack(t *testing.T) {
	dir := smallJournalDir(t)
	cfg := testConfig()
	cfg.JournalDir = dir
	var logs testlog.Buffer
	causes := make(chan error, 10)
	f := startFarmWith(t, Options{Config: cfg, BlobStore: storage.NewMemoryBlobStore(), ActionCache: storage.NewMemoryActionCache(),
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), OnJournalFailed: func(err error) { causes <- err }}, "")
	reg := prometheus.NewRegistry()
	reg.MustRegister(f.s.Collector())
	wantMetrics(t, reg, []wantMetric{{name: "paddock_scheduler_journal_failed", want: 0}})
	ctx := ctxTimeout(t)
	if _, refused := fillJournal(ctx, t, f); status.Code(refused) != codes.Unavailable {
		t.Fatalf("Execute on a full journal disk: %v, want UNAVAILABLE", refused)
	}
	select {
	case err := <-causes:
		if !errors.Is(err, syscall.ENOSPC) {
			t.Errorf("OnJournalFailed(%v), want the disk's ENOSPC", err)
		}
	case <-ctx.Done():
		t.Fatal("OnJournalFailed was not called")
	}
	wantMetrics(t, reg, []wantMetric{{name: "paddock_scheduler_journal_failed", want: 1}})
	if len(causes) != 0 {
		t.Error("OnJournalFailed called more than once")
	}
	if n := strings.Count(logs.String(), "level=ERROR msg=\"scheduler: journal failed"); n != 1 || !strings.Contains(logs.String(), "no space left on device") {
		t.Errorf("%d ERROR lines saying the journal failed, want 1 naming the cause:\n%s", n, logs.String())
	}
}
