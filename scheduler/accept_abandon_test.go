package scheduler

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/scheduler/journal"
)

// gateJournal gives s (started without a journal) one whose commits are
// reported only once the test calls release: until then an Execute the
// core has accepted waits in waitDurable, its name untold, for as long as
// the test needs. Released at the latest when the test ends, before the
// farm closes the journal.
func gateJournal(t *testing.T, s *Scheduler) (release func()) {
	t.Helper()
	gate := make(chan struct{})
	j, _, err := journal.Open(journal.Options{Dir: t.TempDir(), Sync: journal.SyncWrite, OnDurable: func(seq uint64, err error) {
		<-gate
		s.onDurable(seq, err)
	}})
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.dur = &durability{j: j, last: j.LastSeq(), durable: j.LastSeq(), advanced: make(chan struct{})}
	s.mu.Unlock()
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release)
	return release
}

// executeStream is the server side of an Execute call whose context the
// test ends; nothing is sent on it before the operation is named.
type executeStream struct {
	grpc.ServerStream // unused: Execute calls only Context and Send
	ctx               context.Context
}

func (s *executeStream) Context() context.Context            { return s.ctx }
func (s *executeStream) Send(*longrunningpb.Operation) error { return nil }

// TestExecuteWhoseClientLeftBeforeItsNameIsAbandoned: an Execute whose
// client leaves (its deadline, a cancel) while the operation's record is
// being written ends before it names the operation, which the core has
// accepted all the same. It used to run forever: nobody followed it, so
// abandoned_grace never applied, and its worker's slot stayed taken. Now
// it is idle from the call's end and abandoned after the grace, and its
// execution, which nothing else waits for, is cancelled on its worker.
func TestExecuteWhoseClientLeftBeforeItsNameIsAbandoned(t *testing.T) {
	clock := newFakeClock()
	cfg := abandonConfig()
	f := startFarm(t, cfg, "", nil, nil, clock)
	release := gateJournal(t, f.s)
	w := startTestWorker(t, f.addr, "w1", 1, blockRun)
	ctx := ctxTimeout(t)

	req := executeRequest(f.action(t, "sleep 300", nil))
	cctx, leave := context.WithCancel(ctx)
	defer leave()
	ended := make(chan error, 1)
	go func() { ended <- (&executionService{s: f.s}).Execute(req, &executeStream{ctx: cctx}) }()
	accepted := func() (string, bool) {
		f.s.mu.Lock()
		defer f.s.mu.Unlock()
		for name := range f.s.core.ops {
			return name, true
		}
		return "", false
	}
	w.waitFor(t, "the Execute accepted by the core", func() bool { _, ok := accepted(); return ok })
	name, _ := accepted()
	leave() // the client's deadline, while the record waits for the disk
	select {
	case err := <-ended:
		if status.Code(err) != codes.Canceled {
			t.Fatalf("Execute ended with %v, want CANCELLED before it named the operation", err)
		}
	case <-ctx.Done():
		t.Fatal("Execute did not end when its client left")
	}
	release() // the record is written after all
	w.waitFor(t, "the action assigned", func() bool {
		return slices.ContainsFunc(w.assigned, func(a *workerpb.Assignment) bool { return a.OperationName == name })
	})

	op := func() opView {
		f.s.mu.Lock()
		defer f.s.mu.Unlock()
		v, _ := f.s.core.Operation(name)
		return v
	}
	clock.Advance(cfg.AbandonedGrace - time.Second)
	f.s.Tick()
	if op().done {
		t.Fatal("abandoned before abandoned_grace")
	}
	clock.Advance(2 * time.Second)
	f.s.Tick()
	if v := op(); !v.done || v.response.GetStatus().GetCode() != int32(codes.NotFound) || !strings.Contains(v.response.GetStatus().GetMessage(), "abandoned") {
		t.Fatalf("after abandoned_grace the operation is at stage %v, done %v, status %v; want done and NOT_FOUND as abandoned",
			v.stage, v.done, v.response.GetStatus())
	}
	w.waitFor(t, "the abandoned execution cancelled on its worker", func() bool {
		return slices.Contains(w.cancelled, name)
	})
}
