package scheduler

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/api/workerpb/workerclient"
	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/testlog"
	"github.com/paddock-build/paddock/storage"
)

// With envSchedulerDir set, the test binary is a scheduler process (see
// TestMain): disk storage and a journal under that directory, served on
// envSchedulerAddr; it prints "LISTENING <addr>" once serving.
const (
	envSchedulerDir  = "PADDOCK_SCHEDULER_TEST_SCHEDULER_DIR"
	envSchedulerAddr = "PADDOCK_SCHEDULER_TEST_SCHEDULER_ADDR"
)

// crashConfig is the configuration of the scheduler processes.
func crashConfig(dir string) Config {
	cfg := DefaultConfig()
	cfg.LeaseDuration = 10 * time.Second
	cfg.ReconnectGrace = 5 * time.Second
	cfg.HeartbeatInterval = 200 * time.Millisecond
	cfg.TickInterval = 50 * time.Millisecond
	cfg.JournalDir = filepath.Join(dir, "journal")
	return cfg
}

// runSchedulerProcess is the body of a scheduler process; it serves until
// killed.
func runSchedulerProcess(dir, addr string) error {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cas, err := storage.NewDiskBlobStore(storage.DiskOptions{Dir: filepath.Join(dir, "storage")})
	if err != nil {
		return err
	}
	ac, err := storage.NewDiskActionCache(crashActionCacheDir(dir), nil)
	if err != nil {
		return err
	}
	s, err := New(Options{Config: crashConfig(dir), BlobStore: cas, ActionCache: ac, Logger: logger})
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	s.Register(srv)
	fmt.Printf("LISTENING %s\n", lis.Addr())
	return srv.Serve(lis)
}

// crashActionCacheDir is the action cache the workers (in the test
// process) write and the scheduler processes read. It is apart from the
// CAS directory, whose temporary files each scheduler process clears at
// start: one process's start must not race another's writes.
func crashActionCacheDir(dir string) string { return filepath.Join(dir, "action-cache") }

// schedulerProcess is one run of the scheduler process.
type schedulerProcess struct {
	cmd    *exec.Cmd
	addr   string
	stderr *testlog.Buffer
}

func startSchedulerProcess(t *testing.T, dir, addr string) *schedulerProcess {
	t.Helper()
	stderr := &testlog.Buffer{}
	cmd, out := startTestProcess(t, stderr, envSchedulerDir+"="+dir, envSchedulerAddr+"="+addr)
	p := &schedulerProcess{cmd: cmd, stderr: stderr}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "LISTENING ") {
		_ = cmd.Process.Kill() // may have exited already
		werr := cmd.Wait()
		t.Fatalf("scheduler process said %q, %v (exit: %v); stderr:\n%s", line, err, werr, p.stderr)
	}
	p.addr = strings.TrimSpace(strings.TrimPrefix(line, "LISTENING "))
	return p
}

func (p *schedulerProcess) kill() {
	// It may have exited already (SIGQUIT below, then this in a defer), and
	// Wait reports "signal: killed" or that it was waited for already.
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
}

// runLog records which scheduler process (its incarnation: 0 for the
// first, then one more per restart) sent each assignment the workers got.
// Its interceptor sees every message a worker receives: a worker stream is
// served by the one scheduler process alive when its first message
// arrives, since a process is started only after the previous one died.
type runLog struct {
	mu          sync.Mutex
	incarnation int
	assigned    map[string][]int // action hash → incarnations that sent it, in order
	notes       []string
}

func (l *runLog) restarted() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.incarnation++
}

// interceptor records, for each assignment received, the incarnation of
// the scheduler that sent it.
func (l *runLog) interceptor(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	cs, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, err
	}
	return &loggedStream{ClientStream: cs, l: l, incarnation: -1}, nil
}

type loggedStream struct {
	grpc.ClientStream
	l           *runLog
	incarnation int
}

func (s *loggedStream) RecvMsg(m any) error {
	if err := s.ClientStream.RecvMsg(m); err != nil {
		return err
	}
	s.l.mu.Lock()
	defer s.l.mu.Unlock()
	if s.incarnation < 0 {
		s.incarnation = s.l.incarnation
	}
	if a := m.(*workerpb.SchedulerMessage).GetAssignment(); a != nil {
		h := a.ActionDigest.GetHash()
		s.l.assigned[h] = append(s.l.assigned[h], s.incarnation)
		s.l.notes = append(s.l.notes, fmt.Sprintf("%s %s attempt %d from scheduler %d", h, a.OperationName, a.Attempt, s.incarnation))
	}
	return nil
}

// startCrashWorker starts a workerclient worker whose assignments runLog
// records.
func startCrashWorker(t *testing.T, addr, id string, l *runLog, run workerclient.Handler) {
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()), fastReconnect,
		grpc.WithStreamInterceptor(l.interceptor))
	if err != nil {
		t.Fatal(err)
	}
	c, err := workerclient.New(workerclient.Options{Conn: conn, Handler: run, ReconnectDelay: 20 * time.Millisecond,
		Register: &workerpb.Register{WorkerId: id, Concurrency: 8}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }() // returns ctx's error once stopped
	t.Cleanup(func() { cancel(); <-done; conn.Close() })
}

// crashActions is how many Executes the crash test sends (the issue asks
// for 1,000; they all fit in a few seconds).
const crashActions = 1000

// The scheduler process is SIGKILLed at random moments while Executes from
// several clients are in flight, and restarted on the same journal. Every
// operation whose name a client learned completes, seen through
// WaitExecution on that name; none is lost (NOT_FOUND); an action runs
// again only if a crash came after its previous run started.
func TestSchedulerKilledRepeatedlyLosesNoOperation(t *testing.T) {
	dir := t.TempDir()
	actions := storeCrashActions(t, dir, crashActions)
	p := startSchedulerProcess(t, dir, "127.0.0.1:0")
	addr := p.addr
	defer func() { p.kill() }()
	var logs []*testlog.Buffer

	rl := &runLog{assigned: map[string][]int{}}
	// The workers write the action cache as real ones do, so a client
	// that Executes again (it never learned the name of its first
	// operation) gets the result without a second run.
	ac, err := storage.NewDiskActionCache(crashActionCacheDir(dir), nil)
	if err != nil {
		t.Fatal(err)
	}
	run := func(ctx context.Context, a *workerpb.Assignment) *repb.ExecuteResponse {
		select { // the action's own work, 2–30ms
		case <-time.After(time.Duration(2+rand.IntN(28)) * time.Millisecond):
		case <-ctx.Done():
			return nil
		}
		res := &repb.ActionResult{ExitCode: 0}
		if d, err := digest.New(repb.DigestFunction_SHA256, a.ActionDigest.GetHash(), a.ActionDigest.GetSizeBytes()); err == nil {
			// Logged, not failed: a scheduler process starting removes
			// stray files from this directory, which can fail a Put
			// replacing an entry (the old one stays). A result missing
			// shows as a rerun, which checkReruns reports.
			if err := ac.Put(ctx, a.InstanceName, d, res); err != nil {
				t.Logf("worker: action cache write for %s: %v", a.OperationName, err)
			}
		}
		return &repb.ExecuteResponse{Result: res}
	}
	for i := 0; i < 3; i++ {
		startCrashWorker(t, addr, fmt.Sprint("crash-worker-", i), rl, run)
	}

	// 90s for the clients, then 10s in which a stuck run's last scheduler
	// prints its goroutines (below).
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Second)
	defer cancel()
	clientsDone := make(chan struct{})
	var lost []string
	var lostMu sync.Mutex
	var finished atomic.Int64 // operations the clients saw done
	go func() {
		defer close(clientsDone)
		var wg sync.WaitGroup
		const clients = 4
		for c := 0; c < clients; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, l := range runCrashClient(ctx, t, addr, actions[c*len(actions)/clients:(c+1)*len(actions)/clients], &finished) {
					lostMu.Lock()
					lost = append(lost, l)
					lostMu.Unlock()
				}
			}()
		}
		wg.Wait()
	}()

	// The kills are placed by progress, not by the clock, so that they
	// land while the clients run however fast the machine is: at six
	// random counts of finished operations, each after a random delay of
	// up to 30ms once that count is reached.
	var at []int64
	for range 6 {
		at = append(at, int64(len(actions)/20+rand.IntN(len(actions)*17/20)))
	}
	slices.Sort(at)
	kills := 0
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for kills < len(at) {
		select {
		case <-clientsDone:
		case <-tick.C:
			if finished.Load() < at[kills] {
				continue
			}
			time.Sleep(time.Duration(rand.IntN(30)) * time.Millisecond) // a random moment after the mark
			p.kill()
			kills++
			logs = append(logs, p.stderr)
			rl.restarted()
			p = startSchedulerProcess(t, dir, addr)
			continue
		}
		break
	}
	// Clients still waiting 10s before their deadline are stuck: SIGQUIT
	// makes the last scheduler print every goroutine's stack (its
	// handlers still waiting for them) and exit.
	var stacks string
	deadline, _ := ctx.Deadline()
	select {
	case <-clientsDone:
	case <-time.After(time.Until(deadline) - 10*time.Second):
		_ = p.cmd.Process.Signal(syscall.SIGQUIT) // fails only if it died already
		_ = p.cmd.Wait()                          // exit status 2 after the dump
		stacks = schedulerGoroutines(p.stderr.String())
		<-clientsDone
	}
	logs = append(logs, p.stderr)
	if ctx.Err() != nil {
		t.Fatalf("clients did not finish in time; %d unfinished, e.g. %v; scheduler logs:\n%s\n--- the last scheduler's goroutines ---\n%s",
			len(lost), lost[:min(5, len(lost))], tail(logs), stacks)
	}
	if len(lost) > 0 {
		t.Fatalf("%d operation(s) lost or failed, e.g. %v; scheduler logs:\n%s", len(lost), lost[:min(5, len(lost))], tail(logs))
	}
	if !checkReruns(t, rl) {
		t.Logf("scheduler logs:\n%s", tail(logs))
		for _, n := range rl.notes {
			t.Log(n)
		}
	}
	all := logText(logs, true)
	t.Logf("%d Executes, %d kills, %d actions ran more than once (each sent again only by a later scheduler process); after restarts the scheduler adopted %d action(s) whose dispatch it had lost, and requeued %d that came back without their worker (results sent but not yet written)",
		len(actions), kills, countReruns(rl), strings.Count(all, "adopted"), strings.Count(all, "came back after the scheduler restarted without it"))
	if kills < 6 {
		t.Fatalf("only %d of 6 kills happened while the clients ran", kills)
	}
}

// schedulerGoroutines keeps, of a Go traceback, the goroutines with a
// frame in this package (the handlers and the scheduler's loops, not
// gRPC's transport), at most 200 KB of them.
func schedulerGoroutines(traceback string) string {
	_, dump, _ := strings.Cut(traceback, "SIGQUIT")
	var b strings.Builder
	for _, g := range strings.Split(dump, "\n\n") {
		if strings.Contains(g, "paddock/scheduler.") && b.Len() < 200000 {
			b.WriteString(g)
			b.WriteString("\n\n")
		}
	}
	return b.String()
}

func tail(logs []*testlog.Buffer) string { return logText(logs, false) }

func logText(logs []*testlog.Buffer, full bool) string {
	var b strings.Builder
	for i, l := range logs {
		s := l.String()
		if len(s) > 3000 && !full {
			s = "…" + s[len(s)-3000:]
		}
		fmt.Fprintf(&b, "--- run %d ---\n%s", i+1, s)
	}
	return b.String()
}

// storeCrashActions writes n distinct actions into the disk CAS the
// scheduler processes use.
func storeCrashActions(t *testing.T, dir string, n int) []digest.Digest {
	cas, err := storage.NewDiskBlobStore(storage.DiskOptions{Dir: filepath.Join(dir, "storage")})
	if err != nil {
		t.Fatal(err)
	}
	put := func(m proto.Message) digest.Digest {
		b, _ := proto.Marshal(m)
		d := digest.FromBytes(repb.DigestFunction_SHA256, b)
		if err := cas.Put(context.Background(), d, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		return d
	}
	out := make([]digest.Digest, n)
	for i := range out {
		cmd := put(&repb.Command{Arguments: []string{"/bin/true", fmt.Sprint(i)}})
		out[i] = put(&repb.Action{CommandDigest: cmd.Proto(), InputRootDigest: digest.Empty(repb.DigestFunction_SHA256).Proto()})
	}
	return out
}

// runCrashClient executes actions, up to 50 at a time, as a client that
// survives scheduler restarts: it follows each operation through
// WaitExecution on the name it was given. It returns the operations that
// were lost or did not succeed.
func runCrashClient(ctx context.Context, t *testing.T, addr string, actions []digest.Digest, finished *atomic.Int64) []string {
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()), fastReconnect)
	if err != nil {
		t.Error(err)
		return nil
	}
	defer conn.Close()
	ec := repb.NewExecutionClient(conn)
	var mu sync.Mutex
	var bad []string
	sem := make(chan struct{}, 50)
	var wg sync.WaitGroup
	for _, d := range actions {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			err := executeAcrossRestarts(ctx, ec, d)
			finished.Add(1)
			if err != nil {
				mu.Lock()
				bad = append(bad, err.Error())
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return bad
}

// executeAcrossRestarts runs one action to completion the way a REv2
// client should: Execute until it has an operation name, then
// WaitExecution on that name after every broken stream. NOT_FOUND for a
// name it was given is a lost operation.
func executeAcrossRestarts(ctx context.Context, ec repb.ExecutionClient, d digest.Digest) error {
	name := ""
	for ctx.Err() == nil {
		var stream interface {
			Recv() (*longrunningpb.Operation, error)
		}
		var err error
		if name == "" {
			stream, err = ec.Execute(ctx, executeRequest(d), grpc.WaitForReady(true))
		} else {
			stream, err = ec.WaitExecution(ctx, &repb.WaitExecutionRequest{Name: name}, grpc.WaitForReady(true))
		}
		for err == nil {
			var op *longrunningpb.Operation
			if op, err = stream.Recv(); err != nil {
				break
			}
			name = op.Name
			if op.Done {
				resp := &repb.ExecuteResponse{}
				if err := op.GetResponse().UnmarshalTo(resp); err != nil || resp.GetStatus().GetCode() != 0 {
					return fmt.Errorf("%s (%s): response %v, %v", name, d, resp, err)
				}
				return nil
			}
		}
		switch {
		case errors.Is(err, io.EOF):
			return fmt.Errorf("%s (%s): stream ended before the operation was done", name, d)
		case name != "" && status.Code(err) == codes.NotFound:
			return fmt.Errorf("%s (%s): lost: %v", name, d, err)
		case status.Code(err) != codes.Unavailable && ctx.Err() == nil:
			return fmt.Errorf("%s (%s): %v", name, d, err)
		}
		// UNAVAILABLE: the scheduler died; go on once it is back.
	}
	return fmt.Errorf("%s (%s): %v", name, d, ctx.Err())
}

// checkReruns fails if a scheduler process sent an action twice: an
// action may run again only after the process that sent it died (its
// worker had started it before the crash).
func checkReruns(t *testing.T, rl *runLog) bool {
	ok := true
	rl.mu.Lock()
	defer rl.mu.Unlock()
	for action, incs := range rl.assigned {
		for i := 1; i < len(incs); i++ {
			if incs[i] <= incs[i-1] {
				ok = false
				t.Errorf("action %s was sent again by scheduler process %d, which had sent it already (processes %v)", action, incs[i], incs)
			}
		}
	}
	return ok
}

func countReruns(rl *runLog) int {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	n := 0
	for _, incs := range rl.assigned {
		if len(incs) > 1 {
			n++
		}
	}
	return n
}
