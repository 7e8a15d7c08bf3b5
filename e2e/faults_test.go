package e2e

import (
	"bufio"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/internal/testdisk"
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
		g.started(c, limit)
		return c
	case <-time.After(limit):
		g.t.Fatalf("no attempt of the action connected within %s", limit)
		return nil
	}
}

// started reads the "started" line of an attempt that connected.
func (g *gate) started(c net.Conn, limit time.Duration) {
	g.t.Helper()
	if err := c.SetDeadline(time.Now().Add(limit)); err != nil {
		g.t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "started\n" {
		g.t.Fatalf("an attempt connected but said %q (%v)", line, err)
	}
}

// checkKilled fails the test unless the attempt behind c has gone (its
// sandbox was torn down, so the connection is closed).
func checkKilled(t testing.TB, c net.Conn, limit time.Duration) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(limit)); err != nil {
		t.Fatal(err)
	}
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

// awaitRetried waits up to faultLimit for the result of an action that
// was retried, and checks it succeeded.
func awaitRetried(t *testing.T, done <-chan execResult, what string) execResult {
	t.Helper()
	var r execResult
	select {
	case r = <-done:
	case <-time.After(faultLimit):
		t.Fatalf("Execute did not complete within %s of the retry", faultLimit)
	}
	if r.err != nil || status.FromProto(r.resp.Status).Code() != codes.OK || r.resp.Result.GetExitCode() != 0 {
		t.Fatalf("Execute %s: %v, %v; want the retried attempt's success", what, r.resp.GetStatus(), r.err)
	}
	return r
}

// faultLimit bounds every wait of TestFaults; a bound against hangs, not
// an assertion on speed.
const faultLimit = time.Minute

// TestFaults kills parts of the farm while an action runs, or runs it on a
// worker whose disk is too small, and checks that the client still gets a
// correct answer: the action's success after a retry, or a clear error and
// nothing cached.
func TestFaults(t *testing.T) {
	needPaddock(t)

	t.Run("WorkerKilled", func(t *testing.T) {
		// Separate processes, so the worker can die alone.
		rs := newRoles(t)
		rs.startWorker("w1")
		c := newSplitClient(t, rs.storageAddr, rs.schedAddr)
		g := newGate(t)

		// The killed worker is replaced by the same worker restarted (as a
		// supervisor would; it re-registers holding nothing, so the action
		// is requeued at once), then by another worker (the action is
		// requeued once the dead one's reconnect grace has passed).
		for i, next := range []string{"w1", "w2"} {
			a := g.action()
			a.cmd.Arguments[2] += " # case " + strconv.Itoa(i) // a new action each time
			done := c.executeAsync(t.Context(), c.prepare(t.Context(), a))

			// Attempt 1 runs; the worker dies under it, and so does the
			// attempt's sandbox.
			first := g.attempt(faultLimit)
			rs.worker.kill()
			checkKilled(t, first, faultLimit)
			select {
			case r := <-done:
				t.Fatalf("Execute ended when the worker died, before any retry: %v, %v", r.resp, r.err)
			default:
			}

			// The replacement gets the action; attempt 2 finishes.
			rs.startWorker(next)
			second := g.attempt(faultLimit)
			if _, err := second.Write([]byte("go\n")); err != nil {
				t.Fatalf("telling the gated action to go: %v", err)
			}
			second.Close()
			r := awaitRetried(t, done, "after the worker was killed (replaced by "+next+")")
			if got := string(c.read(t.Context(), r.resp.Result.StdoutDigest)); got != "answer: go\n" {
				t.Errorf("stdout of the retried action %q, want %q", got, "answer: go\n")
			}
			if got := r.resp.Result.GetExecutionMetadata().GetWorker(); got != next || r.resp.CachedResult {
				t.Errorf("the retried action's result comes from worker %q (cached %v), want a fresh one from %s", got, r.resp.CachedResult, next)
			}
		}

		rs.stop()
	})

	t.Run("BuildDirectoryFull", func(t *testing.T) {
		st, cached := inputsLargerThanDisk(t)
		t.Logf("Execute with inputs larger than the build directory's disk: %v", st)
		if st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "disk is full") {
			t.Errorf("Execute with inputs larger than the build directory's disk: status %v, want RESOURCE_EXHAUSTED saying the disk is full", st)
		}
		if status.Code(cached) != codes.NotFound {
			t.Errorf("the action cache lookup for the action that could not run gave %v, want NOT_FOUND", cached)
		}
	})

	t.Run("RunnerKilled", func(t *testing.T) {
		f, c := startUpClient(t, "--runner-config", hostNetworkConfig(t))
		g := newGate(t)
		before := f.runnerPID()
		done := c.executeAsync(t.Context(), c.prepare(t.Context(), g.action()))
		first := g.attempt(faultLimit)
		if err := syscall.Kill(before, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		checkKilled(t, first, faultLimit)

		// The worker reports the attempt as failed and retryable
		// (UNAVAILABLE) to the scheduler, which requeues it; the worker
		// waits for the restarted runner, and attempt 2 runs there.
		select {
		case r := <-done:
			t.Fatalf("Execute ended without a retry on the restarted runner: %v, %v", r.resp.GetStatus(), r.err)
		case second := <-g.conns:
			if _, err := second.Write([]byte("go\n")); err != nil {
				t.Fatalf("telling the gated action to go: %v", err)
			}
			second.Close()
		case <-time.After(faultLimit):
			t.Fatalf("no retry within %s of the runner's death", faultLimit)
		}
		awaitRetried(t, done, "retried on the restarted runner")
		if !strings.Contains(f.log(), "may be retried") {
			t.Errorf("the worker did not report the interrupted attempt as retryable (no \"may be retried\" in its log)")
		}

		// The runner was restarted, and the next action runs at the first
		// try.
		f.waitRunnerReady(before)
		_, stdout, _ := c.run(t.Context(), action{cmd: shell("echo after the runner restarted"), doNotCache: true})
		if stdout != "after the runner restarted\n" {
			t.Errorf("stdout of an action after the runner restarted: %q", stdout)
		}
		f.shutdown()
	})
}

// inputsLargerThanDisk runs an action with 6 MiB of inputs on a worker
// whose directory (file cache and build directories) is a 4 MiB tmpfs; it
// returns the action's status and the error of an action cache lookup for
// it.
func inputsLargerThanDisk(t *testing.T) (*status.Status, error) {
	rs, c := startOnSmallDisk(t)
	big := tree{files: map[string]inputFile{}}
	for i := range 3 {
		big.files["in/part"+strconv.Itoa(i)] = inputFile{data: patterned(i, 2<<20)}
	}
	d := c.prepare(t.Context(), action{cmd: shell("cat in/* | wc -c > out.txt", "out.txt"), root: big})
	resp, err := c.execute(t.Context(), d, true)
	if err != nil {
		t.Fatalf("Execute with inputs larger than the build directory's disk: %v", err)
	}
	ac := repb.NewActionCacheClient(grpctest.Dial(t, rs.storageAddr))
	_, cached := ac.GetActionResult(t.Context(), &repb.GetActionResultRequest{ActionDigest: d})
	rs.stop()
	return status.FromProto(resp.Status), cached
}

// TestFullDiskInputsAreResourceExhausted: inputs that do not fit on the
// worker's disk fail the action with RESOURCE_EXHAUSTED, as a full disk
// while it runs does, not UNKNOWN.
func TestFullDiskInputsAreResourceExhausted(t *testing.T) {
	needPaddock(t)
	if st, _ := inputsLargerThanDisk(t); st.Code() != codes.ResourceExhausted {
		t.Errorf("status %v, want RESOURCE_EXHAUSTED", st)
	}
}

// startOnSmallDisk starts the roles and worker w1, the worker's directory
// (file cache and build directories) a 4 MiB tmpfs, and a client of them.
func startOnSmallDisk(t *testing.T) (*roles, *client) {
	t.Helper()
	dir := searchableTempDir(t)
	rs := startRoles(t, dir, testdisk.MountAt(t, filepath.Join(dir, "worker"), 4<<20, 0))
	rs.startWorker("w1")
	return rs, newSplitClient(t, rs.storageAddr, rs.schedAddr)
}

// patterned is n bytes of input file number i: files of different i
// differ, and none compresses to nothing.
func patterned(i, n int) []byte {
	data := make([]byte, n)
	for j := range data {
		data[j] = byte(i + j*7)
	}
	return data
}

// fillDisk writes a file into dir until its filesystem is full.
func fillDisk(t *testing.T, dir string) {
	t.Helper()
	filler, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	for _, err := filler.Write(make([]byte, 64<<10)); err == nil; _, err = filler.Write(make([]byte, 64<<10)) {
	}
	_ = filler.Close() // full: what it could write is there
}

// TestFullDiskNeverLosesOutput: an action that runs while the worker's
// disk is full either fails with an error, or succeeds with all of its
// output; it is never reported (and cached) as a success whose stdout was
// lost.
func TestFullDiskNeverLosesOutput(t *testing.T) {
	needPaddock(t)
	rs, c := startOnSmallDisk(t)
	fillDisk(t, rs.workDir)

	d := c.prepare(t.Context(), action{cmd: shell("echo hello from a full disk")})
	resp, err := c.execute(t.Context(), d, true)
	if err != nil {
		t.Fatal(err)
	}
	st := status.FromProto(resp.Status)
	stdout := string(c.read(t.Context(), resp.GetResult().GetStdoutDigest()))
	t.Logf("on a full disk: status %v, exit code %d, stdout %q", st, resp.GetResult().GetExitCode(), stdout)
	if st.Code() == codes.OK && resp.Result.ExitCode == 0 && stdout != "hello from a full disk\n" {
		t.Errorf("on a full disk the action succeeded with stdout %q, want its whole output or an error", stdout)
	}
	ac := repb.NewActionCacheClient(grpctest.Dial(t, rs.storageAddr))
	if r, err := ac.GetActionResult(t.Context(), &repb.GetActionResultRequest{ActionDigest: d}); err == nil {
		if got := string(c.read(t.Context(), r.StdoutDigest)); got != "hello from a full disk\n" {
			t.Errorf("the action cache holds a result with stdout %q for it", got)
		}
	}
	rs.stop()
}

// TestFullDiskNeverCachesCutOutputFiles: an action that writes its output
// file while the worker's disk is full, and does not check its writes,
// exits 0 with an empty file. Its result was cached as a success and
// served after the disk had room again (outside probe); it must fail,
// retryable, and leave nothing in the action cache.
func TestFullDiskNeverCachesCutOutputFiles(t *testing.T) {
	needPaddock(t)
	rs, c := startOnSmallDisk(t)
	fillDisk(t, rs.workDir)

	d := c.prepare(t.Context(), action{cmd: shell("echo hello-world > out.txt 2>/dev/null; exit 0", "out.txt")})
	resp, err := c.execute(t.Context(), d, true)
	if err != nil {
		t.Fatal(err)
	}
	if st := status.FromProto(resp.Status); st.Code() != codes.ResourceExhausted {
		t.Errorf("on a full disk: status %v, exit code %d; want RESOURCE_EXHAUSTED", st, resp.GetResult().GetExitCode())
	}
	ac := repb.NewActionCacheClient(grpctest.Dial(t, rs.storageAddr))
	if r, err := ac.GetActionResult(t.Context(), &repb.GetActionResultRequest{ActionDigest: d}); err == nil {
		t.Errorf("the action cache holds a result for it: %v", r)
	}
	rs.stop()
}

// TestFileCacheMakesRoomOnFullDisk: actions that run one at a time, each
// with an input that fits on the worker's disk, all run, even when the
// file cache's size bound (10 GiB by default) is larger than the disk:
// unused cached inputs give way.
func TestFileCacheMakesRoomOnFullDisk(t *testing.T) {
	needPaddock(t)
	rs, c := startOnSmallDisk(t)
	for i := range 4 {
		a := action{cmd: shell("wc -c < in"), root: tree{files: map[string]inputFile{"in": {data: patterned(i, 1500<<10)}}}, doNotCache: true}
		resp, err := c.execute(t.Context(), c.prepare(t.Context(), a), true)
		if err != nil || status.FromProto(resp.Status).Code() != codes.OK {
			t.Fatalf("action %d with a 1.5 MiB input on a 4 MiB disk: %v, %v", i+1, resp.GetStatus(), err)
		}
	}
	rs.stop()
}

// TestDiskFullOnlyWhileTheActionRanNeverCachesCutOutputFiles: an action
// whose output file is cut short by a full disk, which has room again
// when the action ends (the filler was another tenant's action, removed
// meanwhile), fails RESOURCE_EXHAUSTED and leaves nothing in the action
// cache. The disk was looked at only at the end, and the empty out.txt
// was cached and served (outside probe).
func TestDiskFullOnlyWhileTheActionRanNeverCachesCutOutputFiles(t *testing.T) {
	needPaddock(t)
	rs, c := startOnSmallDisk(t)
	fillDisk(t, rs.workDir)

	// It writes its output on the full disk, says so, and ends once a
	// write succeeds again.
	script := "echo hello-world > out.txt 2>/dev/null; : > wrote; until (echo x > room) 2>/dev/null; do sleep 0.05; done; exit 0"
	d := c.prepare(t.Context(), action{cmd: shell(script, "out.txt")})
	done := make(chan execResult, 1)
	go func() {
		resp, err := c.execute(t.Context(), d, true)
		done <- execResult{resp, err}
	}()
	for deadline := time.Now().Add(time.Minute); !fileBelow(rs.workDir, "wrote"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the action never wrote its output")
		}
	}
	if err := os.Remove(filepath.Join(rs.workDir, "filler")); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if st := status.FromProto(r.resp.Status); st.Code() != codes.ResourceExhausted {
		t.Errorf("a disk full while the action ran: status %v, exit code %d; want RESOURCE_EXHAUSTED", st, r.resp.GetResult().GetExitCode())
	}
	ac := repb.NewActionCacheClient(grpctest.Dial(t, rs.storageAddr))
	if res, err := ac.GetActionResult(t.Context(), &repb.GetActionResultRequest{ActionDigest: d}); err == nil {
		t.Errorf("the action cache holds a result for it: %v", res)
	}
	rs.stop()
}

// fileBelow reports whether a file named name is somewhere below dir.
func fileBelow(dir, name string) bool {
	found := false
	_ = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.Name() == name && !e.IsDir() {
			found = true
			return filepath.SkipAll
		}
		return nil
	})
	return found
}
