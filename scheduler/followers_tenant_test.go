package scheduler

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/auth"
)

// TestAnotherTenantCannotKeepAnOperationAlive: another tenant's
// GetOperation, WaitOperation and WaitExecution of an operation are
// NOT_FOUND and count for nothing: it is abandoned after the grace as if
// nobody had asked (they kept it running, holding a worker's slot). And
// names that are no operation's are not kept, however long: 3 MiB names
// grew the scheduler by 800 MB for the grace.
func TestAnotherTenantCannotKeepAnOperationAlive(t *testing.T) {
	clock := newFakeClock()
	cfg := abandonConfig()
	f := startFarm(t, cfg, "", nil, nil, clock)
	w := startTestWorker(t, f.addr, "w1", 1, blockRun)
	ctx := ctxTimeout(t)
	sctx, cancel := context.WithCancel(ctx)
	stream := must(f.exec.Execute(sctx, executeRequest(f.action(t, "victim", nil))))
	op, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, "assigned", func() bool {
		return slices.ContainsFunc(w.assigned, func(a *workerpb.Assignment) bool { return a.OperationName == op.Name })
	})
	cancel()
	idleSince := func(name string) (time.Time, bool) {
		f.s.mu.Lock()
		defer f.s.mu.Unlock()
		at, ok := f.s.followers.idle[name]
		return at, ok
	}
	w.waitFor(t, "unfollowed", func() bool { _, idle := idleSince(op.Name); return idle })

	other := auth.NewContext(ctx, &auth.Principal{Tenant: "other"})
	ops := &operationsService{s: f.s}
	long := "operations/" + strings.Repeat("a", 3<<20)
	for i := range 3 {
		clock.Advance(cfg.AbandonedGrace / 3)
		for _, name := range []string{op.Name, long} {
			errs := map[string]error{}
			_, errs["GetOperation"] = ops.GetOperation(other, &longrunningpb.GetOperationRequest{Name: name})
			_, errs["WaitOperation"] = ops.WaitOperation(other, &longrunningpb.WaitOperationRequest{Name: name, Timeout: durationpb.New(time.Millisecond)})
			errs["WaitExecution"] = f.s.follow(other, name, "other", func(opView) error { return nil })
			for call, err := range errs {
				if st := status.Convert(err); st.Code() != codes.NotFound || len(st.Message()) > 1024 {
					t.Fatalf("round %d: another tenant's %s of %.40q: %v (%d bytes), want a short NOT_FOUND", i, call, name, st.Code(), len(st.Message()))
				}
			}
		}
		if at, _ := idleSince(op.Name); i == 0 && !at.Before(clock.Now()) {
			t.Fatal("another tenant's calls restarted the operation's idle time")
		}
		if _, kept := idleSince(long); kept {
			t.Fatal("a name that is no operation's is kept")
		}
		f.s.mu.Lock()
		n := len(f.s.followers.n)
		f.s.mu.Unlock()
		if n != 0 {
			t.Fatalf("%d followed names, want none", n)
		}
	}
	clock.Advance(time.Second)
	f.s.Tick()
	w.waitFor(t, "the operation abandoned and cancelled on its worker", func() bool {
		return slices.Contains(w.cancelled, op.Name)
	})
}
