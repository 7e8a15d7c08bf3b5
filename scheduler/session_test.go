package scheduler

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/internal/testlog"
	"github.com/paddock-build/paddock/storage"
)

// startLoggedFarm is startFarm with the scheduler's log in logs.
func startLoggedFarm(t *testing.T, logs *testlog.Buffer) *farm {
	t.Helper()
	return startFarmWith(t, Options{Config: testConfig(), BlobStore: storage.NewMemoryBlobStore(), ActionCache: storage.NewMemoryActionCache(),
		Logger: slog.New(slog.NewTextHandler(logs, nil))}, "")
}

// waitForLog polls logs until they contain want, or fails the test.
func waitForLog(t *testing.T, logs *testlog.Buffer, want string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), want); {
		if time.Now().After(deadline) {
			t.Fatalf("the log never said %q; it has:\n%s", want, logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestWorkerIncarnationTellsAReconnectFromADuplicate: a Register from the
// same worker process (same incarnation) replaces its live session at
// once; one from another process with the same worker id is refused with
// ALREADY_EXISTS while that session is live, with a warning naming both
// peers, and accepted as soon as the session has ended.
func TestWorkerIncarnationTellsAReconnectFromADuplicate(t *testing.T) {
	logs := &testlog.Buffer{}
	f := startLoggedFarm(t, logs)
	client := workerpb.NewWorkerServiceClient(grpctest.Dial(t, "passthrough:///"+f.addr))
	register := func(incarnation string) (workerpb.WorkerService_ConnectClient, context.CancelFunc, error) {
		ctx, cancel := context.WithCancel(ctxTimeout(t))
		stream, err := client.Connect(ctx)
		if err == nil {
			err = stream.Send(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Register{Register: &workerpb.Register{
				WorkerId: "dup", Concurrency: 1, Incarnation: incarnation}}})
		}
		if err == nil {
			var m *workerpb.SchedulerMessage
			if m, err = stream.Recv(); err == nil && m.GetRegistered() == nil {
				t.Fatalf("first answer %v, want Registered", m)
			}
		}
		return stream, cancel, err
	}
	first, cancelFirst, err := register("process-1")
	if err != nil {
		t.Fatal(err)
	}
	defer cancelFirst()
	again, cancelAgain, err := register("process-1")
	if err != nil {
		t.Fatalf("a reconnect of the same process: %v", err)
	}
	if _, err := first.Recv(); status.Code(err) != codes.Aborted {
		t.Fatalf("the replaced stream ended with %v, want ABORTED", err)
	}
	_, cancelRefused, err := register("process-2")
	cancelRefused()
	if status.Code(err) != codes.AlreadyExists || !strings.Contains(err.Error(), `"dup"`) {
		t.Fatalf("a second process with the same id: %v, want ALREADY_EXISTS naming the id", err)
	}
	waitForLog(t, logs, "refused a second worker process")
	if !strings.Contains(logs.String(), "connected_peer=127.0.0.1:") || !strings.Contains(logs.String(), "refused_peer=127.0.0.1:") {
		t.Fatalf("the warning does not name both peers:\n%s", logs.String())
	}
	// The process that holds the id ends: the other gets in.
	if err := again.CloseSend(); err != nil {
		t.Fatal(err)
	}
	cancelAgain()
	for deadline := time.Now().Add(10 * time.Second); ; {
		_, cancel, err := register("process-2")
		if err == nil {
			cancel()
			break
		}
		cancel()
		if status.Code(err) != codes.AlreadyExists || time.Now().After(deadline) {
			t.Fatalf("after the first process left: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestTwoWorkerProcessesWithOneIDDoNotKnockEachOtherOff: two workerclient
// processes given the same id no longer end each other's sessions in
// turn (failing the actions they held, "reconnected without it"): the
// second is refused and waits, the first keeps its session and finishes
// its action, and the second takes over once the first has stopped.
func TestTwoWorkerProcessesWithOneIDDoNotKnockEachOtherOff(t *testing.T) {
	logs := &testlog.Buffer{}
	f := startLoggedFarm(t, logs)
	g := newGate()
	first, stopFirst := runTestWorker(f.addr, "dup", 1, g.run("dup"))
	defer stopFirst()
	ctx := ctxTimeout(t)
	stream, err := f.exec.Execute(ctx, executeRequest(f.action(t, "held", nil)))
	if err != nil {
		t.Fatal(err)
	}
	first.waitFor(t, "the assignment", func() bool { return len(first.assigned) == 1 })
	second := startTestWorker(t, f.addr, "dup", 1, okRun("dup"))
	waitForLog(t, logs, "refused a second worker process")
	close(g.release)
	ops, err := collect(stream)
	if err != nil || len(ops) == 0 {
		t.Fatalf("Execute stream: %v", err)
	}
	if resp := responseOf(t, ops[len(ops)-1]); resp.Status.GetCode() != 0 || resp.Result.GetExitCode() != 3 {
		t.Fatalf("the first process's action: %v, exit %d; want OK from its gated run (exit 3)", resp.Status, resp.Result.GetExitCode())
	}
	first.mu.Lock()
	connects := first.connects
	first.mu.Unlock()
	if connects != 1 || second.assignedCount() != 0 || strings.Contains(logs.String(), "reconnected without it") {
		t.Fatalf("first registered %d times, second got %d actions; log:\n%s", connects, second.assignedCount(), logs.String())
	}
	stopFirst()
	second.waitFor(t, "registration once the first stopped", func() bool { return second.connects == 1 })
}

// TestStaleResultIsNotLoggedAsACompletion: a result for an attempt the
// scheduler no longer runs on that worker is logged as ignored, with the
// attempt the worker reported; only accepted results are logged as
// completions, each with its own attempt.
func TestStaleResultIsNotLoggedAsACompletion(t *testing.T) {
	logs := &testlog.Buffer{}
	s := newTestScheduler(t, testConfig(), logs)
	defer s.Close()
	submitBench(t, s, 1)
	sess, err := s.connectWorker(context.Background(), &workerpb.Register{WorkerId: "w", Concurrency: 1, Platform: []*workerpb.Property{linux}})
	if err != nil {
		t.Fatal(err)
	}
	name := benchSubmission(1).name
	report := func(attempt int32, resp *repb.ExecuteResponse) {
		t.Helper()
		if err := sess.handle(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Result{Result: &workerpb.Result{
			OperationName: name, Attempt: attempt, ExecuteResponse: mustMarshal(t, resp)}}}); err != nil {
			t.Fatal(err)
		}
	}
	// Attempt 1 fails retryably; attempt 2 goes to the same (only) worker.
	report(1, &repb.ExecuteResponse{Status: &rpcstatus.Status{Code: int32(code.Code_UNAVAILABLE), Message: "runner died"}})
	report(1, &repb.ExecuteResponse{Result: &repb.ActionResult{ExitCode: 7}}) // a stale duplicate
	if v, _ := s.core.Operation(name); v.done {
		t.Fatal("the stale result completed the operation")
	}
	report(2, &repb.ExecuteResponse{Result: &repb.ActionResult{ExitCode: 0}})
	var completed, stale []string
	for _, l := range strings.Split(logs.String(), "\n") {
		switch {
		case strings.Contains(l, "action completed"):
			completed = append(completed, l)
		case strings.Contains(l, "stale action result ignored"):
			stale = append(stale, l)
		}
	}
	if len(completed) != 2 || !strings.Contains(completed[0], "attempt=1 status=Unavailable") || !strings.Contains(completed[1], "attempt=2 status=OK") {
		t.Fatalf("completions logged:\n%s\nwant attempt 1 (requeued) and attempt 2 only", strings.Join(completed, "\n"))
	}
	if len(stale) != 1 || !strings.Contains(stale[0], "attempt=1") {
		t.Fatalf("stale results logged: %q, want the duplicate of attempt 1", stale)
	}
}

// TestRegisteredNamesTheActionsKept: the Registered that answers a
// reconnecting worker names, of the actions it lists in hand, those the
// scheduler still assigns to it (the same attempt, not cancelled), before
// the Cancels for the others: the worker writes the action cache for the
// kept ones only (workerclient.StillAssigned), so that an action that
// crossed a reconnect is cached, and a stale attempt is not.
func TestRegisteredNamesTheActionsKept(t *testing.T) {
	s := newTestScheduler(t, testConfig(), nil)
	defer s.Close()
	for i := 1; i <= 3; i++ {
		submitBench(t, s, i)
	}
	reg := &workerpb.Register{WorkerId: "w", Concurrency: 3, Platform: []*workerpb.Property{linux}}
	first, err := s.connectWorker(context.Background(), reg)
	if err != nil {
		t.Fatal(err)
	}
	kept, cancelled, otherAttempt := benchSubmission(1).name, benchSubmission(2).name, benchSubmission(3).name
	s.mu.Lock()
	if err := s.core.Cancel(s.clock.Now(), cancelled); err != nil {
		t.Fatal(err)
	}
	s.apply()
	s.mu.Unlock()
	first.close()

	reg.Running = []*workerpb.InHand{{OperationName: kept, Attempt: 1}, {OperationName: cancelled, Attempt: 1},
		{OperationName: otherAttempt, Attempt: 3}, {OperationName: "operations/never-assigned", Attempt: 1}}
	second, err := s.connectWorker(context.Background(), reg)
	if err != nil {
		t.Fatal(err)
	}
	defer second.close()
	second.mu.Lock()
	msgs := second.pending
	second.mu.Unlock()
	r := msgs[0].GetRegistered()
	if r == nil || len(r.Kept) != 1 || r.Kept[0].OperationName != kept || r.Kept[0].Attempt != 1 {
		t.Fatalf("first answer %v; want Registered keeping %s attempt 1 only", msgs[0], kept)
	}
	cancels := map[string]bool{}
	for _, m := range msgs[1:] {
		if c := m.GetCancel(); c != nil {
			cancels[c.OperationName] = true
		}
	}
	if len(cancels) != 3 || cancels[kept] {
		t.Fatalf("cancels after Registered: %v; want every action in hand but %s", cancels, kept)
	}
}
