// Package e2e tests Paddock end to end, as its users run it: the paddock
// binary is built once per test run, started as `paddock up` (or as
// separate roles) in subprocesses on loopback, and driven with real Bazel
// or a small REv2 client. Everything here needs root (the runner starts
// sandboxes); the tests skip without it.
package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/paddock-build/paddock/api/runnerpb"
	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/internal/proctest"
)

// paddockBin is the binary built by TestMain, "" when the tests cannot run
// (skipReason says why).
var paddockBin, skipReason string

func TestMain(m *testing.M) {
	code := func() int {
		if os.Geteuid() != 0 {
			skipReason = "the end-to-end tests start `paddock up`, whose runner needs root"
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "paddock-e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		bin := filepath.Join(dir, "paddock")
		build := exec.Command("go", "build", "-o", bin, "./cmd/paddock")
		build.Dir = ".." // the module root
		// Static, as `make build` and the images build it: the binary also
		// runs inside test rootfs trees that have no C library.
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go build ./cmd/paddock: %v\n%s", err, out)
			return 1
		}
		paddockBin = bin
		// Another binary under test: one built with -race, say
		// (go build -race -o /tmp/paddock-race ./cmd/paddock), whose
		// reports go where GORACE=log_path=... says.
		if v := os.Getenv("PADDOCK_E2E_BINARY"); v != "" {
			paddockBin = v
		}
		return m.Run()
	}()
	os.Exit(code)
}

// needPaddock skips the test when the paddock binary could not be prepared.
func needPaddock(t testing.TB) {
	t.Helper()
	if paddockBin == "" {
		t.Skip(skipReason)
	}
}

// process is one paddock subprocess (a role, or `paddock up`) whose
// stderr goes to a log file under the test's temporary directory.
type process struct {
	t       testing.TB
	name    string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	err     error // valid once exited is closed
	lines   chan string
}

// processStopTimeout bounds how long a stopped process may take to exit;
// a bound against hangs, not an assertion on speed.
const processStopTimeout = 60 * time.Second

// startProcess runs `paddock args...` and returns once it has printed a
// stdout line matching ready, with ready's first submatch (an address);
// with a nil ready it returns at once. The process is killed when the test
// ends if the test has not stopped it, and its log is shown if the test
// failed.
func startProcess(t testing.TB, name string, ready *regexp.Regexp, args ...string) (*process, string) {
	t.Helper()
	p, addr, err := tryStartProcess(t, name, ready, args...)
	if err != nil {
		t.Fatal(err)
	}
	return p, addr
}

// tryStartProcess is startProcess returning an error if the process exits
// before it is ready.
func tryStartProcess(t testing.TB, name string, ready *regexp.Regexp, args ...string) (*process, string, error) {
	t.Helper()
	return tryStartExecutable(t, name, ready, paddockBin, args...)
}

// tryStartExecutable is tryStartProcess for any executable: a wrapper that
// starts paddock in a namespace of its own, say.
func tryStartExecutable(t testing.TB, name string, ready *regexp.Regexp, exe string, args ...string) (*process, string, error) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Stderr = logFile
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	// Its own process group, so that a Ctrl-C in the terminal running the
	// tests does not reach it before the test sends its own; killed if the
	// test binary dies (a -timeout panic) without its cleanups.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logFile.Close()
	p := &process{t: t, name: name, cmd: cmd, logPath: logPath, exited: make(chan struct{}), lines: make(chan string, 100)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
		_, _ = io.Copy(io.Discard, stdout) // the rest, until the process exits
		close(p.lines)
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill() // may have exited since the check above
			<-p.exited
		}
		if t.Failed() {
			p.dumpLog()
		}
	})
	if ready == nil {
		return p, "", nil
	}
	deadline := time.After(2 * time.Minute)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				<-p.exited
				return p, "", fmt.Errorf("paddock %s exited before it was ready: %v", strings.Join(args, " "), p.err)
			}
			if m := ready.FindStringSubmatch(line); m != nil {
				return p, m[1], nil
			}
		case <-deadline:
			return p, "", fmt.Errorf("paddock %s printed no line matching %q within 2 minutes", strings.Join(args, " "), ready)
		}
	}
}

// hasExited reports whether the process has exited, without waiting.
func (p *process) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// dumpLog logs the tail of the process's stderr.
func (p *process) dumpLog() {
	data, _ := os.ReadFile(p.logPath)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > 80 {
		lines = lines[len(lines)-80:]
	}
	p.t.Logf("last lines of paddock %s's log (%s):\n%s", p.name, p.logPath, strings.Join(lines, "\n"))
}

// log returns everything the process wrote to stderr so far.
func (p *process) log() string {
	data, _ := os.ReadFile(p.logPath)
	return string(data)
}

// stop sends sig and waits for the process to exit; it fails the test
// unless the process exits with status 0.
func (p *process) stop(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal paddock %s: %v", p.name, err)
	}
	select {
	case <-p.exited:
	case <-time.After(processStopTimeout):
		_ = p.cmd.Process.Kill() // may have exited just now; the test fails either way
		<-p.exited
		p.t.Fatalf("paddock %s did not exit within %s of %v", p.name, processStopTimeout, sig)
	}
	if p.err != nil {
		p.t.Errorf("paddock %s after %v: %v (want a clean exit)", p.name, sig, p.err)
	}
}

// kill kills the process with SIGKILL and waits for it.
func (p *process) kill() {
	_ = p.cmd.Process.Kill() // may have exited already: gone either way
	<-p.exited
}

// farm is a running `paddock up`.
type farm struct {
	*process
	addr string // host:port of every REv2 service
	data string // its --data directory
}

var upReady = regexp.MustCompile(`^paddock is up: storage, scheduler and worker on (\S+), data in `)

// startUpClient is startUp with its data in a fresh temporary directory,
// and a client of it.
func startUpClient(t testing.TB, extra ...string) (*farm, *client) {
	t.Helper()
	f := startUp(t, "", extra...)
	return f, newClient(t, f.addr)
}

// startUp starts `paddock up` with its data in a fresh temporary directory
// (or in data, if not empty: a restart) and returns once it serves.
func startUp(t testing.TB, data string, extra ...string) *farm {
	t.Helper()
	needPaddock(t)
	if data == "" {
		data = filepath.Join(searchableTempDir(t), "data")
	}
	args := append([]string{"up", "--data", data, "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"}, extra...)
	p, addr := startProcess(t, "up", upReady, args...)
	return &farm{process: p, addr: addr, data: data}
}

// runnerPID returns the pid of the farm's runner child.
func (f *farm) runnerPID() int {
	f.t.Helper()
	pids := childPIDs(f.cmd.Process.Pid, " runner ")
	if len(pids) != 1 {
		f.t.Fatalf("paddock up has %d runner children (%v), want 1", len(pids), pids)
	}
	return pids[0]
}

// waitRunnerReady waits until a runner other than the one with pid old
// runs and answers CheckReadiness on the farm's runner socket.
func (f *farm) waitRunnerReady(old int) {
	f.t.Helper()
	rc := runnerpb.NewRunnerClient(grpctest.Dial(f.t, "unix://"+filepath.Join(f.data, "runner.sock")))
	waitFor(f.t, "runner restarted and ready", time.Minute, func() bool {
		pids := childPIDs(f.cmd.Process.Pid, " runner ")
		if len(pids) != 1 || pids[0] == old {
			return false
		}
		ctx, cancel := context.WithTimeout(f.t.Context(), time.Second)
		defer cancel()
		_, err := rc.CheckReadiness(ctx, &runnerpb.CheckReadinessRequest{})
		return err == nil
	})
}

// hostNetworkConfig writes a runner config that allows
// dockerNetwork=standard (off by default), for the tests whose actions
// reach a listener of the test on the host's loopback, and returns it.
func hostNetworkConfig(t testing.TB) string {
	t.Helper()
	path := filepath.Join(searchableTempDir(t), "runner-host-network.yaml")
	if err := os.WriteFile(path, []byte("version: 1\nallow_host_network: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// searchableTempDir returns a new temporary directory that, like its
// parent, unprivileged uids may search (mode 0711): sandboxes run as such
// uids and must reach their input roots below the farm's data directory.
// t.TempDir's directories are 0700.
func searchableTempDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// shutdown stops the farm with SIGINT (Ctrl-C) and checks that it exits
// cleanly and leaves none of its processes, build directories or sandbox
// bundles behind.
func (f *farm) shutdown() {
	f.t.Helper()
	f.stop(os.Interrupt)
	checkNoProcessesLeft(f.t)
	// The worker's build directories go when their action ends; the
	// runner keeps one bundle directory per sandbox slot, and writes an
	// action's config.json into it only while the action runs.
	entries, err := os.ReadDir(filepath.Join(f.data, "worker", "builds"))
	if err != nil {
		f.t.Errorf("after paddock up stopped: %v", err)
	}
	for _, e := range entries {
		f.t.Errorf("after paddock up stopped, build directory worker/builds/%s is left behind", e.Name())
	}
	// Never fails: its func skips what it cannot read (bundles may not exist).
	_ = filepath.WalkDir(filepath.Join(f.data, "runner", "bundles"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			f.t.Errorf("after paddock up stopped, %s is left behind", p)
		}
		return nil
	})
}

// checkNoProcessesLeft fails the test if any process still runs the
// paddock binary (the runner child, sandbox inits and spawners are all
// re-executions of it). Tests in this package run one at a time, so any
// such process belongs to the test that just stopped its farm. Processes
// that are already exiting get a short grace, polled.
func checkNoProcessesLeft(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := paddockProcesses()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("processes of the paddock binary still running after it stopped: %s", strings.Join(left, "; "))
			for _, pid := range left {
				if n, err := strconv.Atoi(strings.Fields(pid)[0]); err == nil {
					_ = syscall.Kill(n, syscall.SIGKILL) // cleanup after the error above; it may have exited
				}
			}
			return
		}
		time.Sleep(50 * time.Millisecond) // polling, with the deadline above
	}
}

// paddockProcesses lists "pid cmdline" of live processes whose executable
// is the paddock binary this test run built.
func paddockProcesses() []string {
	var out []string
	for _, pid := range proctest.PIDs() {
		if pid == os.Getpid() {
			continue
		}
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil {
			continue
		}
		if strings.TrimSuffix(exe, " (deleted)") != paddockBin {
			continue
		}
		if state, _, _ := proctest.Stat(pid); state == "Z" {
			continue // a zombie holds nothing; its parent reaps it
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		out = append(out, fmt.Sprintf("%d %s", pid, strings.ReplaceAll(strings.TrimRight(string(cmdline), "\x00"), "\x00", " ")))
	}
	return out
}

// childPIDs returns the pids of processes whose parent is ppid and whose
// command line contains want.
func childPIDs(ppid int, want string) []int {
	var out []int
	for _, pid := range proctest.PIDs() {
		if state, parent, ok := proctest.Stat(pid); !ok || parent != ppid || state == "Z" {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if strings.Contains(strings.ReplaceAll(string(cmdline), "\x00", " "), want) {
			out = append(out, pid)
		}
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(20 * time.Millisecond) // polling, with the deadline above
	}
}
