package runner

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/paddock-build/paddock/api/runnerpb"
	"github.com/paddock-build/paddock/images"
	"github.com/paddock-build/paddock/internal/proctest"
	"github.com/paddock-build/paddock/internal/testlog"
	"github.com/paddock-build/paddock/sandbox"
)

// testIDBase keeps the tests' sandbox ids apart from a real runner's and
// from the sandbox package's tests (which use 300000).
const testIDBase = 2_000_000

// testCgroupParent keeps the tests' cgroups apart.
const testCgroupParent = "paddock-runner-test"

func TestMain(m *testing.M) {
	if sandbox.Reexec() {
		return
	}
	os.Exit(m.Run())
}

// requireRoot skips tests that need namespaces, cgroups and chown.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (namespaces, cgroups, chown); CI runs as root")
	}
}

// searchableTempDir is a t.TempDir whose parents are searchable by the
// sandboxes' unprivileged uids (t.TempDir's are 0700).
func searchableTempDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for p := dir; p != os.TempDir() && p != "/"; p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// testEnv is a runner serving on a real UNIX socket with the real sandbox.
type testEnv struct {
	cfg    Config
	svc    *Service
	client runnerpb.RunnerClient
	socket string
	build  string          // the "worker's" build directory: one input root per action
	logs   *testlog.Buffer // what the service logged (also in the test's log)
	n      atomic.Int64
}

func newTestEnv(t testing.TB, mod func(*Config)) *testEnv {
	t.Helper()
	requireRoot(t)
	return newTestEnvIn(t, searchableTempDir(t), mod)
}

// newTestEnvIn is newTestEnv with the state and build directories in base.
func newTestEnvIn(t testing.TB, base string, mod func(*Config)) *testEnv {
	t.Helper()
	requireRoot(t)
	cfg := DefaultConfig()
	cfg.StateDir = filepath.Join(base, "state")
	cfg.Socket = filepath.Join(base, "runner.sock")
	cfg.IDBase = testIDBase
	cfg.MaxSandboxes = 4
	cfg.Sandbox.CgroupParent = testCgroupParent
	cfg.Sandbox.KillGrace = time.Second
	if mod != nil {
		mod(&cfg)
	}
	l, err := sandbox.New(cfg.Sandbox)
	if err != nil {
		t.Fatalf("sandbox.New: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() }) // teardown: the checks are done
	var cache *images.Cache
	if cfg.Images.Dir != "" {
		cache, err = images.New(cfg.CacheOptions())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cache.Close() }) // teardown: the checks are done
	}
	logs := &testlog.Buffer{}
	logger := slog.New(slog.NewMultiHandler(testlog.Logger(t, nil).Handler(), slog.NewTextHandler(logs, nil)))
	svc, err := New(Options{Config: cfg, Launcher: l, Images: cache, Version: "test", Logger: logger})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	socket := cfg.Socket
	lis, err := Listen(socket)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(ServerOptions()...)
	svc.Register(g)
	go func() { _ = g.Serve(lis) }() // returns when the test stops the server
	t.Cleanup(g.Stop)
	client, closer, err := Dial(socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closer.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if v, err := WaitReady(ctx, client); err != nil || v != "test" {
		t.Fatalf("WaitReady = %q, %v", v, err)
	}
	build := filepath.Join(base, "build")
	if err := os.Mkdir(build, 0o755); err != nil {
		t.Fatal(err)
	}
	return &testEnv{cfg: cfg, svc: svc, client: client, socket: socket, build: build, logs: logs}
}

// action is one prepared input root and its output paths.
type action struct {
	id, root, stdout, stderr string
}

// newAction makes an empty input root as the worker would: owned by root,
// 0755, beside a directory for the captured output.
func (e *testEnv) newAction(t testing.TB) *action {
	t.Helper()
	n := e.n.Add(1)
	dir := filepath.Join(e.build, fmt.Sprint(n))
	a := &action{
		id:     fmt.Sprintf("operations/test-%d", n),
		root:   filepath.Join(dir, "root"),
		stdout: filepath.Join(dir, "stdout"),
		stderr: filepath.Join(dir, "stderr"),
	}
	if err := os.MkdirAll(a.root, 0o755); err != nil {
		t.Fatal(err)
	}
	return a
}

// request is a RunRequest for a, running args.
func (a *action) request(args ...string) *runnerpb.RunRequest {
	return &runnerpb.RunRequest{
		ActionId: a.id, InputRoot: a.root, Arguments: args,
		StdoutPath: a.stdout, StderrPath: a.stderr,
	}
}

// output returns what the command wrote to stdout and stderr.
func (a *action) output(t testing.TB) (string, string) {
	t.Helper()
	o, _ := os.ReadFile(a.stdout)
	e, _ := os.ReadFile(a.stderr)
	return string(o), string(e)
}

// run calls Run over the socket and fails the test on an RPC error.
func (e *testEnv) run(t testing.TB, req *runnerpb.RunRequest) *runnerpb.RunResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	resp, err := e.client.Run(ctx, req)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return resp
}

// mustSucceed asserts an OK status and exit code 0, showing the output
// otherwise.
func mustSucceed(t testing.TB, a *action, resp *runnerpb.RunResponse) {
	t.Helper()
	if resp.StatusCode != 0 || resp.ExitCode != 0 {
		o, e := a.output(t)
		t.Fatalf("status %s %q, exit %d signal %d; stdout %q stderr %q",
			codes.Code(resp.StatusCode), resp.StatusMessage, resp.ExitCode, resp.Signal, o, e)
	}
}

// slotProcesses lists host processes running as a uid of the test id
// range, except the idle inits the sandbox spawner keeps started ahead.
func slotProcesses(t testing.TB) []string {
	t.Helper()
	var out []string
	for _, p := range proctest.WithUIDIn(t, testIDBase, testIDBase+4*sandbox.DefaultIDRange) {
		if p.Cmdline == "paddock-sandbox-init\x00" && !proctest.HasChildren(p.PID) {
			continue // a pre-started init waiting for work
		}
		out = append(out, fmt.Sprintf("pid %d uid %d %q", p.PID, p.UID, p.Cmdline))
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond) // poll
	}
}
