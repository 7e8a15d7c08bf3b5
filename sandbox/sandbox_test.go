package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/paddock-build/paddock/internal/proctest"
)

// testIDBase is the host uid/gid container root maps to in tests.
const testIDBase = 300000

// testCgroupParent keeps the tests' cgroups apart from a real runner's,
// and from those of another run of these tests on the same machine (the
// tests count the cgroups under it).
var testCgroupParent = "paddock-sandbox-test-" + strconv.Itoa(os.Getpid())

// testRootfs is a minimal rootfs built once by TestMain: a static probe and
// a static busybox in /bin, and empty mount points. Its parents are
// world-searchable so the sandbox's mapped root can reach it.
var testRootfs string

// probeHostPath is the probe binary's host path (inside testRootfs), usable
// with the host's "/" as rootfs.
var probeHostPath string

func TestMain(m *testing.M) {
	if Reexec() {
		return
	}
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	// Not under /tmp: sandboxes with the host root as rootfs get a fresh
	// tmpfs there, and must still see the probe.
	dir, err := os.MkdirTemp("/var/tmp", "paddock-sandbox-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := buildTestRootfs(dir); err != nil {
		fmt.Fprintln(os.Stderr, "build test rootfs:", err)
		return 1
	}
	testRootfs = filepath.Join(dir, "rootfs")
	probeHostPath = filepath.Join(testRootfs, "bin", "probe")
	return m.Run()
}

func buildTestRootfs(dir string) error {
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	root := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "proc", "dev", "tmp", "work", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	cmd := exec.Command("go", "build", "-o", filepath.Join(root, "bin", "probe"), "./internal/probe")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build probe: %w", err)
	}
	src, err := os.Open("/bin/busybox")
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(filepath.Join(root, "bin", "busybox"), os.O_WRONLY|os.O_CREATE, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		return err
	}
	if err := dst.Close(); err != nil {
		return err
	}
	for _, applet := range []string{"sh", "true", "sleep", "setsid"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", applet)); err != nil {
			return err
		}
	}
	return nil
}

// requireRoot skips tests that need real namespaces and cgroups.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (namespaces, cgroups); CI runs as root")
	}
}

func newTestLauncher(t testing.TB, opts Options) *Launcher {
	t.Helper()
	requireRoot(t)
	if opts.CgroupParent == "" {
		opts.CgroupParent = testCgroupParent
	}
	l, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() }) // the test may have closed it already
	return l
}

// testSpec is DefaultSpec over the test rootfs, with a pids limit.
func testSpec(args ...string) *specs.Spec {
	s := DefaultSpec(testRootfs, testIDBase, args...)
	limit := int64(256)
	s.Linux.Resources.Pids = &specs.LinuxPids{Limit: &limit}
	return s
}

// writeBundle writes spec into a fresh world-searchable bundle directory.
func writeBundle(t testing.TB, spec *specs.Spec) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for p := filepath.Dir(dir); p != os.TempDir() && p != "/"; p = filepath.Dir(p) {
		_ = os.Chmod(p, 0o755) // t.TempDir's parents are 0700
	}
	data, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// runOutput is a finished sandbox with its output read back.
type runOutput struct {
	*Result
	stdout, stderr string
}

// runSpec runs spec with req's other fields and returns the result and the
// captured output.
func runSpec(t testing.TB, l *Launcher, spec *specs.Spec, req Request) runOutput {
	t.Helper()
	out, err := tryRunSpec(t, l, spec, req)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return out
}

func tryRunSpec(t testing.TB, l *Launcher, spec *specs.Spec, req Request) (runOutput, error) {
	t.Helper()
	bundle := writeBundle(t, spec)
	req.Bundle = bundle
	req.Stdout = filepath.Join(bundle, "stdout")
	req.Stderr = filepath.Join(bundle, "stderr")
	res, err := l.Run(context.Background(), req)
	if err != nil {
		return runOutput{}, err
	}
	o, _ := os.ReadFile(req.Stdout)
	e, _ := os.ReadFile(req.Stderr)
	return runOutput{Result: res, stdout: string(o), stderr: string(e)}, nil
}

// decodeJSON parses the probe's output into v.
func decodeJSON(t testing.TB, out runOutput, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(out.stdout), v); err != nil {
		t.Fatalf("probe output %q (stderr %q, result %+v): %v", out.stdout, out.stderr, out.Result, err)
	}
}

// sandboxProcesses lists host processes running as a uid in the tests'
// mapped range: every process of every test sandbox, and nothing else,
// except the idle inits spawners keep warm (see warmInits). A finished
// sandbox's init may still be exiting when Run returns, so this polls for
// a few seconds until the list is empty.
func sandboxProcesses(t testing.TB) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var out []string
		for _, p := range mappedProcesses(t) {
			if !isWarmInit(p.pid) {
				out = append(out, p.desc)
			}
		}
		if len(out) == 0 || time.Now().After(deadline) {
			return out
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sandboxProcessesNow is sandboxProcesses without waiting.
func sandboxProcessesNow(t testing.TB) []string {
	t.Helper()
	var out []string
	for _, p := range mappedProcesses(t) {
		if !isWarmInit(p.pid) {
			out = append(out, p.desc)
		}
	}
	return out
}

// warmInits counts the idle inits kept by this test process's spawners.
func warmInits(t testing.TB) int {
	t.Helper()
	n := 0
	for _, p := range mappedProcesses(t) {
		// Only this test process's spawners' inits: another sandbox test
		// binary running on the machine keeps warm inits of its own.
		if isWarmInit(p.pid) && parentOf(parentOf(p.pid)) == os.Getpid() {
			n++
		}
	}
	return n
}

// isWarmInit: an init (by argv[0]) that a spawner started and that has no
// children, i.e. has not been given a command.
func isWarmInit(pid int) bool {
	cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if string(cmd) != initArg0+"\x00" {
		return false
	}
	if !isSpawner(parentOf(pid)) {
		return false
	}
	return !proctest.HasChildren(pid)
}

type mappedProcess struct {
	pid  int
	desc string
}

func mappedProcesses(t testing.TB) []mappedProcess {
	t.Helper()
	var out []mappedProcess
	for _, p := range proctest.WithUIDIn(t, testIDBase, testIDBase+DefaultIDRange) {
		out = append(out, mappedProcess{p.PID, strconv.Itoa(p.PID) + " " + strings.ReplaceAll(p.Cmdline, "\x00", " ")})
	}
	return out
}
