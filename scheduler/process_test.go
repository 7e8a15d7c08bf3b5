package scheduler

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// The test binary doubles as a worker process: with these variables set,
// TestMain runs a worker that announces each action on stdout and never
// finishes it, so a test can SIGKILL it mid-action. (It can also be a
// scheduler process: see crash_test.go.)
const (
	envWorkerAddr = "PADDOCK_SCHEDULER_TEST_WORKER_ADDR"
	envWorkerID   = "PADDOCK_SCHEDULER_TEST_WORKER_ID"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(envSchedulerDir); dir != "" {
		fmt.Fprintln(os.Stderr, runSchedulerProcess(dir, os.Getenv(envSchedulerAddr)))
		os.Exit(1)
	}
	if addr := os.Getenv(envWorkerAddr); addr != "" {
		runTestWorker(addr, os.Getenv(envWorkerID), 1, func(ctx context.Context, a *workerpb.Assignment) *repb.ExecuteResponse {
			fmt.Printf("RUNNING %s %d\n", a.OperationName, a.Attempt)
			<-ctx.Done()
			return nil
		})
		select {} // until killed
	}
	os.Exit(m.Run())
}

// startTestProcess starts this test binary again, running no test, with
// env added, so that TestMain runs the worker or scheduler process env
// names; it writes its stderr to stderr, and returns its stdout for the
// lines it announces. The worker and scheduler processes start alike.
func startTestProcess(t *testing.T, stderr io.Writer, env ...string) (*exec.Cmd, io.ReadCloser) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, out
}

func TestWorkerKilledMidActionCompletesOnAnotherWorker(t *testing.T) {
	f := startFarm(t, testConfig(), "", nil, nil)
	ctx := ctxTimeout(t)
	cmd, out := startTestProcess(t, os.Stderr, envWorkerAddr+"="+f.addr, envWorkerID+"=victim")
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }) // killed and waited for below, unless the test failed first

	d := f.action(t, "victim", nil)
	done := make(chan error, 1)
	var resp *repb.ExecuteResponse
	go func() {
		ops, err := collect(must(f.exec.Execute(ctx, executeRequest(d))))
		if err == nil {
			resp = responseOf(t, ops[len(ops)-1])
		}
		done <- err
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "RUNNING operations/") {
		t.Fatalf("worker process said %q, %v; want RUNNING", line, err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait() // "signal: killed"

	survivor := startTestWorker(t, f.addr, "survivor", 1, okRun("survivor"))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if resp.Status.GetCode() != 0 || resp.Result.GetExecutionMetadata().GetWorker() != "survivor" {
		t.Fatalf("response %v, want success on survivor", resp)
	}
	if a := survivor.firstAssigned(t); a.Attempt != 2 || !strings.Contains(line, a.OperationName) {
		t.Fatalf("survivor got %s attempt %d, want the killed worker's action as attempt 2", a.OperationName, a.Attempt)
	}
}

func TestSchedulerRestart(t *testing.T) {
	cfg := testConfig()
	first := startFarm(t, cfg, "", nil, nil)
	ctx := ctxTimeout(t)
	g := newGate()
	w := startTestWorker(t, first.addr, "w", 1, g.run("w"))
	d := first.action(t, "restart", nil)
	name := first.startExecute(ctx, t, d)
	w.waitFor(t, "the action", func() bool { return w.c.Holding(name) })

	first.stop()
	second := startFarm(t, cfg, first.addr, first.cas, first.ac)
	// The worker reconnects by itself, holding the action the new
	// scheduler never heard of; it is told to drop it.
	w.waitFor(t, "reconnect and cancel", func() bool {
		return w.connects >= 2 && len(w.cancelled) == 1 && w.cancelled[0] == name && !w.c.Holding(name)
	})
	_, err := collect(must(second.exec.WaitExecution(ctx, &repb.WaitExecutionRequest{Name: name})))
	if status.Code(err) != codes.NotFound {
		t.Fatalf("WaitExecution after restart: %v, want NOT_FOUND", err)
	}
	// The client executes again and the reconnected worker runs it.
	close(g.release)
	ops, err := collect(must(second.exec.Execute(ctx, executeRequest(d))))
	if err != nil {
		t.Fatal(err)
	}
	if resp := responseOf(t, ops[len(ops)-1]); resp.Result.GetExitCode() != 3 || resp.Result.GetExecutionMetadata().GetWorker() != "w" {
		t.Fatalf("re-Execute response %v, want the worker's result", resp)
	}
}

func TestWorkerReconnectKeepsActionInHand(t *testing.T) {
	f := startFarm(t, testConfig(), "", nil, nil)
	ctx := ctxTimeout(t)
	g := newGate()
	w := startTestWorker(t, f.addr, "w", 1, g.run("w"))
	done := make(chan []*longrunningpb.Operation, 1)
	d := f.action(t, "in-hand", nil)
	go func() {
		ops, err := collect(must(f.exec.Execute(ctx, executeRequest(d))))
		if err != nil {
			t.Error(err)
		}
		done <- ops
	}()
	w.waitFor(t, "the action", func() bool { return len(w.assigned) == 1 })
	// Cut the worker's stream from the scheduler's side; it reconnects
	// holding the action, and the scheduler lets it finish.
	f.s.mu.Lock()
	f.s.sessions["w"].end("the test ends it")
	f.s.mu.Unlock()
	w.waitFor(t, "the reconnect", func() bool { return w.connects == 2 })
	close(g.release)
	ops := <-done
	if resp := responseOf(t, ops[len(ops)-1]); resp.Result.GetExitCode() != 3 {
		t.Fatalf("response %v, want the held action's result", resp)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.assigned) != 1 || len(w.cancelled) != 0 {
		t.Fatalf("assigned %d, cancelled %v: want the action kept, not redone", len(w.assigned), w.cancelled)
	}
	list, err := f.admin.ListWorkers(ctx, &workerpb.ListWorkersRequest{})
	if err != nil || len(list.Workers) != 1 || !list.Workers[0].Connected || list.Workers[0].WorkerId != "w" {
		t.Fatalf("ListWorkers = %v, %v", list, err)
	}
}

func TestWorkerShutdownGivesActionsBack(t *testing.T) {
	cfg := testConfig()
	cfg.MaxRetries = 0 // a lost action would fail at once: giving back must not count
	f := startFarm(t, cfg, "", nil, nil)
	ctx := ctxTimeout(t)
	leaving, stop := runTestWorker(f.addr, "leaving", 2, blockRun)
	defer stop()
	d1, d2 := f.action(t, "give-back-1", nil), f.action(t, "give-back-2", nil)
	results := make(chan *repb.ExecuteResponse, 2)
	for _, d := range []digest.Digest{d1, d2} {
		go func() {
			ops, err := collect(must(f.exec.Execute(ctx, executeRequest(d))))
			if err != nil {
				t.Error(err)
				results <- nil
				return
			}
			results <- responseOf(t, ops[len(ops)-1])
		}()
	}
	leaving.waitFor(t, "both actions", func() bool { return len(leaving.assigned) == 2 })
	stop() // Leaving, Drain, GiveBack ×2, close
	stayer := startTestWorker(t, f.addr, "stayer", 2, okRun("stayer"))
	for i := 0; i < 2; i++ {
		resp := <-results
		if resp.GetStatus().GetCode() != 0 || resp.GetResult().GetExecutionMetadata().GetWorker() != "stayer" {
			t.Fatalf("response %v, want success on stayer", resp)
		}
	}
	stayer.mu.Lock()
	defer stayer.mu.Unlock()
	for _, a := range stayer.assigned {
		if a.Attempt != 2 {
			t.Fatalf("stayer got %s attempt %d, want attempt 2 (given back once)", a.OperationName, a.Attempt)
		}
	}
}

// The Scheduler edge with an injected clock: leases run on the fake time,
// Tick applies them, and the lost worker's still-open session is hung up.
func TestSchedulerUsesInjectedClockForLeases(t *testing.T) {
	clock := newFakeClock()
	cfg := DefaultConfig()
	cfg.TickInterval = time.Hour // only the test ticks
	s, err := New(Options{Config: cfg, Clock: clock, BlobStore: storage.NewMemoryBlobStore(), ActionCache: storage.NewMemoryActionCache()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := ctxTimeout(t)
	reg := func(id string) *session {
		sess, err := s.connectWorker(context.Background(), &workerpb.Register{WorkerId: id, Concurrency: 1, Platform: []*workerpb.Property{linux}})
		if err != nil {
			t.Fatal(err)
		}
		return sess
	}
	next := func(sess *session) *workerpb.Assignment {
		for {
			ms, err := sess.next(ctx)
			if err != nil {
				t.Fatalf("%s: %v", sess.workerID, err)
			}
			for _, m := range ms {
				if a := m.GetAssignment(); a != nil {
					return a
				}
			}
		}
	}
	a := reg("a")
	executeDirect(t, s, benchSubmission(1))
	if got := next(a); got.Attempt != 1 {
		t.Fatalf("a got attempt %d", got.Attempt)
	}
	b := reg("b")
	clock.Advance(cfg.LeaseDuration - time.Second)
	s.Tick()
	if err := b.handle(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Heartbeat{Heartbeat: &workerpb.Heartbeat{}}}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	s.Tick()
	got := next(b)
	if got.Attempt != 2 {
		t.Fatalf("b got attempt %d, want 2 after a's lease expired", got.Attempt)
	}
	select {
	case <-a.done:
	default:
		t.Fatal("the lost worker's session was not hung up")
	}
	// The worker is told why: it was lost, not replaced (what every ended
	// session used to say).
	for {
		if _, err := a.next(ctx); err != nil {
			if status.Code(err) != codes.Aborted || !strings.Contains(err.Error(), "declared this worker lost") {
				t.Fatalf("the lost worker's stream ends with %v, want ABORTED saying it was lost", err)
			}
			break
		}
	}
	resp, _ := proto.Marshal(&repb.ExecuteResponse{Result: &repb.ActionResult{ExitCode: 5}})
	if err := b.handle(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Result{Result: &workerpb.Result{OperationName: got.OperationName, Attempt: 2, ExecuteResponse: resp}}}); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	v, ok := s.core.Operation(got.OperationName)
	s.mu.Unlock()
	if !ok || !v.done || v.response.Result.GetExitCode() != 5 || v.worker != "b" {
		t.Fatalf("operation %+v, want done on b with exit 5", v)
	}
}
