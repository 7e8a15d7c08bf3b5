package e2e

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/api/workerpb"
)

// gate is a TCP server on the host's loopback that actions (with
// dockerNetwork=standard) connect to, so the test knows when an attempt is
// running and decides when it may finish.
type gate struct {
	t     testing.TB
	lis   net.Listener
	conns chan net.Conn
}

func newGate(t testing.TB) *gate {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{t: t, lis: lis, conns: make(chan net.Conn, 10)}
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				close(g.conns)
				return
			}
			g.conns <- c
		}
	}()
	t.Cleanup(func() { lis.Close() })
	return g
}

// action is a Command that tells the gate it started, waits for its answer
// and succeeds if the answer is "go" (printing it).
func (g *gate) action() action {
	port := strconv.Itoa(g.lis.Addr().(*net.TCPAddr).Port)
	cmd := &repb.Command{
		Arguments: []string{"/bin/bash", "-c",
			`exec 3<>/dev/tcp/127.0.0.1/` + port + ` && echo started >&3 && read -r answer <&3 && echo "answer: $answer" && test "$answer" = go`},
		EnvironmentVariables: []*repb.Command_EnvironmentVariable{{Name: "PATH", Value: "/usr/bin:/bin"}},
	}
	return action{cmd: cmd, platform: []*repb.Platform_Property{{Name: "dockerNetwork", Value: "standard"}}}
}

// attempt waits for the next attempt of the gate's action to connect.
func (g *gate) attempt(limit time.Duration) net.Conn {
	g.t.Helper()
	select {
	case c, ok := <-g.conns:
		if !ok {
			g.t.Fatal("gate closed")
		}
		c.SetDeadline(time.Now().Add(limit))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || line != "started\n" {
			g.t.Fatalf("an attempt connected but said %q (%v)", line, err)
		}
		return c
	case <-time.After(limit):
		g.t.Fatalf("no attempt of the action connected within %s", limit)
		return nil
	}
}

// checkKilled fails the test unless the attempt behind c has gone (its
// sandbox was torn down, so the connection is closed).
func checkKilled(t testing.TB, c net.Conn, limit time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(limit))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("the interrupted attempt is still running: its connection gave %v, want EOF", err)
	}
	c.Close()
}

// execResult is what an Execute call in the background ended with.
type execResult struct {
	resp *repb.ExecuteResponse
	err  error
}

// faultLimit bounds every wait of TestFaults; a bound against hangs, not
// an assertion on speed.
const faultLimit = time.Minute

// TestFaults kills parts of the farm while an action runs and checks that
// the client still gets a correct answer.
func TestFaults(t *testing.T) {
	needPaddock(t)

	t.Run("WorkerKilled", func(t *testing.T) {
		// Separate processes, so the worker can die alone: storage, a
		// scheduler, a runner and a worker (the one that gets killed).
		dir := searchableTempDir(t)
		storage, storageAddr := startProcess(t, "storage", regexp.MustCompile(`^paddock storage listening on (\S+)`),
			"storage", "--listen", "127.0.0.1:0", "--dir", filepath.Join(dir, "storage"))
		cfgPath := filepath.Join(dir, "scheduler.yaml")
		// A short reconnect grace, so a worker that does not come back is
		// given up quickly; a restarted one is recognised at once anyway.
		if err := os.WriteFile(cfgPath, []byte("reconnect_grace: 2s\nlease_duration: 10s\nheartbeat_interval: 1s\ntick_interval: 100ms\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		sched, schedAddr := startProcess(t, "scheduler", regexp.MustCompile(`^paddock scheduler listening on (\S+)`),
			"scheduler", "--listen", "127.0.0.1:0", "--storage", storageAddr, "--config", cfgPath)
		sock := filepath.Join(dir, "runner.sock")
		workDir := filepath.Join(dir, "worker")
		runner, _ := startProcess(t, "runner", regexp.MustCompile(`^paddock runner listening on (\S+)`),
			"runner", "--socket", sock, "--state", filepath.Join(dir, "runner"), "--hide", workDir)
		workerArgs := func(id string) []string {
			return []string{"worker", "--id", id, "--concurrency", "1", "--scheduler", schedAddr,
				"--storage", storageAddr, "--runner", sock, "--dir", workDir}
		}
		worker, _ := startProcess(t, "worker-w1", nil, workerArgs("w1")...)
		admin := workerpb.NewAdminServiceClient(dial(t, schedAddr))
		waitFor(t, "worker w1 connected", faultLimit, func() bool {
			resp, err := admin.ListWorkers(t.Context(), &workerpb.ListWorkersRequest{})
			return err == nil && len(resp.Workers) == 1 && resp.Workers[0].Connected
		})
		c := newSplitClient(t, storageAddr, schedAddr)
		g := newGate(t)

		// The killed worker is replaced by the same worker restarted (as a
		// supervisor would; it re-registers holding nothing, so the action
		// is requeued at once), then by another worker (the action is
		// requeued once the dead one's reconnect grace has passed).
		for i, next := range []string{"w1", "w2"} {
			a := g.action()
			a.cmd.Arguments[2] += " # case " + strconv.Itoa(i) // a new action each time
			d := c.prepare(t.Context(), a)
			done := make(chan execResult, 1)
			go func() {
				resp, err := c.execute(t.Context(), d, true)
				done <- execResult{resp, err}
			}()

			// Attempt 1 runs; the worker dies under it, and so does the
			// attempt's sandbox.
			first := g.attempt(faultLimit)
			worker.kill()
			checkKilled(t, first, faultLimit)
			select {
			case r := <-done:
				t.Fatalf("Execute ended when the worker died, before any retry: %v, %v", r.resp, r.err)
			default:
			}

			// The replacement gets the action; attempt 2 finishes.
			worker, _ = startProcess(t, "worker-"+next+"-"+strconv.Itoa(i), nil, workerArgs(next)...)
			second := g.attempt(faultLimit)
			second.Write([]byte("go\n"))
			second.Close()
			var r execResult
			select {
			case r = <-done:
			case <-time.After(faultLimit):
				t.Fatalf("Execute did not complete within %s of the retry", faultLimit)
			}
			if r.err != nil || status.FromProto(r.resp.Status).Code() != codes.OK || r.resp.Result.GetExitCode() != 0 {
				t.Fatalf("Execute after the worker was killed (replaced by %s): %v, %v; want the retried attempt's success", next, r.resp, r.err)
			}
			if got := string(c.read(t.Context(), r.resp.Result.StdoutDigest)); got != "answer: go\n" {
				t.Errorf("stdout of the retried action %q, want %q", got, "answer: go\n")
			}
			if got := r.resp.Result.GetExecutionMetadata().GetWorker(); got != next || r.resp.CachedResult {
				t.Errorf("the retried action's result comes from worker %q (cached %v), want a fresh one from %s", got, r.resp.CachedResult, next)
			}
		}

		// `paddock worker` exits 1 on Ctrl-C (see TestWorkerExitsCleanly);
		// here only its going away matters.
		worker.signalAndWait(os.Interrupt)
		runner.stop(os.Interrupt)
		sched.stop(os.Interrupt)
		storage.stop(os.Interrupt)
		checkNoProcessesLeft(t)
	})

	t.Run("RunnerKilled", func(t *testing.T) {
		f := startUp(t, "")
		c := newClient(t, f.addr)
		g := newGate(t)
		before := f.runnerPID()
		d := c.prepare(t.Context(), g.action())
		done := make(chan execResult, 1)
		go func() {
			resp, err := c.execute(t.Context(), d, true)
			done <- execResult{resp, err}
		}()
		first := g.attempt(faultLimit)
		if err := syscall.Kill(before, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		checkKilled(t, first, faultLimit)

		// The action fails as retryable (UNAVAILABLE), or, if it was retried
		// once the runner was back, succeeds; it never succeeds without
		// running again, nor fails any other way.
		var r execResult
		select {
		case r = <-done:
			t.Logf("Execute after the runner was killed: %v", r.resp.GetStatus())
			if r.err != nil || status.FromProto(r.resp.Status).Code() != codes.Unavailable {
				t.Errorf("Execute after the runner was killed: %v, %v; want status UNAVAILABLE (retryable)", r.resp, r.err)
			}
		case second := <-g.conns:
			t.Log("the action was retried on the restarted runner")
			second.Write([]byte("go\n"))
			second.Close()
			r = <-done
			if r.err != nil || status.FromProto(r.resp.Status).Code() != codes.OK || r.resp.Result.GetExitCode() != 0 {
				t.Errorf("Execute retried after the runner was killed: %v, %v; want success", r.resp, r.err)
			}
		case <-time.After(faultLimit):
			t.Fatalf("Execute did not complete within %s of the runner's death", faultLimit)
		}

		// The runner is restarted, and actions succeed again. Until the
		// worker has reconnected to it they fail as UNAVAILABLE, which
		// clients retry (Bazel's --remote_retries); so does this test.
		f.waitRunnerReady(before)
		next := c.prepare(t.Context(), action{cmd: shell("echo after the runner restarted"), doNotCache: true})
		var resp *repb.ExecuteResponse
		failures := 0
		waitFor(t, "an action succeeding after the runner restarted", faultLimit, func() bool {
			var err error
			resp, err = c.execute(t.Context(), next, true)
			if err == nil && status.FromProto(resp.Status).Code() == codes.Unavailable {
				failures++
				return false
			}
			if err != nil || status.FromProto(resp.Status).Code() != codes.OK {
				t.Fatalf("an action after the runner restarted: %v, %v; want success (or UNAVAILABLE while the worker reconnects)", resp.GetStatus(), err)
			}
			return true
		})
		t.Logf("the first action after the runner was ready failed %d times with UNAVAILABLE before it ran", failures)
		if got := string(c.read(t.Context(), resp.Result.StdoutDigest)); got != "after the runner restarted\n" {
			t.Errorf("stdout of an action after the runner restarted: %q", got)
		}
		f.shutdown()
	})
}

// TestRunnerRestartIsWaitedFor: an action whose runner dies under it is
// retried by the scheduler, and the retry should run once `paddock up` has
// restarted the runner (about a second later); and once the new runner is
// ready, the next action should run at the first try.
func TestRunnerRestartIsWaitedFor(t *testing.T) {
	needPaddock(t)
	t.Skip("bug: worker/worker.go:243 calls Runner.Run without WaitForReady on a conn in reconnect backoff, so retries fail in milliseconds and actions keep failing after the runner is back")
	f := startUp(t, "")
	c := newClient(t, f.addr)
	g := newGate(t)
	d := c.prepare(t.Context(), g.action())
	done := make(chan execResult, 1)
	go func() {
		resp, err := c.execute(t.Context(), d, true)
		done <- execResult{resp, err}
	}()
	first := g.attempt(faultLimit)
	old := f.runnerPID()
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	checkKilled(t, first, faultLimit)
	select {
	case r := <-done:
		t.Errorf("Execute ended without a retry on the restarted runner: %v, %v", r.resp.GetStatus(), r.err)
	case second := <-g.conns:
		second.Write([]byte("go\n"))
		second.Close()
		if r := <-done; r.err != nil || status.FromProto(r.resp.Status).Code() != codes.OK {
			t.Errorf("Execute retried on the restarted runner: %v, %v; want success", r.resp.GetStatus(), r.err)
		}
	case <-time.After(faultLimit):
		t.Fatalf("no retry within %s", faultLimit)
	}
	f.waitRunnerReady(old)
	_, stdout, _ := c.run(t.Context(), action{cmd: shell("echo first try"), doNotCache: true})
	if stdout != "first try\n" {
		t.Errorf("stdout %q, want %q", stdout, "first try\n")
	}
	f.shutdown()
}

// TestWorkerExitsCleanly: `paddock worker` stopped with Ctrl-C exits 0,
// like `paddock up` and the other roles.
func TestWorkerExitsCleanly(t *testing.T) {
	needPaddock(t)
	t.Skip("bug: cmd/paddock/worker_cmd.go:61 returns serveWorker's context.Canceled on Ctrl-C, so `paddock worker` prints \"paddock worker: context canceled\" and exits 1")
	dir := searchableTempDir(t)
	storage, storageAddr := startProcess(t, "storage", regexp.MustCompile(`^paddock storage listening on (\S+)`),
		"storage", "--listen", "127.0.0.1:0", "--dir", filepath.Join(dir, "storage"))
	sched, schedAddr := startProcess(t, "scheduler", regexp.MustCompile(`^paddock scheduler listening on (\S+)`),
		"scheduler", "--listen", "127.0.0.1:0", "--storage", storageAddr)
	worker, _ := startProcess(t, "worker", nil, "worker", "--id", "w1", "--scheduler", schedAddr,
		"--storage", storageAddr, "--runner", filepath.Join(dir, "runner.sock"), "--dir", filepath.Join(dir, "worker"))
	admin := workerpb.NewAdminServiceClient(dial(t, schedAddr))
	waitFor(t, "worker w1 connected", faultLimit, func() bool {
		resp, err := admin.ListWorkers(t.Context(), &workerpb.ListWorkersRequest{})
		return err == nil && len(resp.Workers) == 1 && resp.Workers[0].Connected
	})
	worker.stop(os.Interrupt)
	sched.stop(os.Interrupt)
	storage.stop(os.Interrupt)
}
