package runner

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/paddock-build/paddock/api/runnerpb"
)

// TestEnvironmentIsExactlyTheCommands: env inside prints exactly the
// Command's variables, in order, and nothing else (no PATH, HOME, ...).
func TestEnvironmentIsExactlyTheCommands(t *testing.T) {
	e := newTestEnv(t, nil)
	a := e.newAction(t)
	req := a.request("/usr/bin/env")
	req.EnvironmentVariables = []*runnerpb.EnvironmentVariable{{Name: "B", Value: "two words"}, {Name: "A", Value: "1"}}
	resp := e.run(t, req)
	mustSucceed(t, a, resp)
	if out, _ := a.output(t); out != "B=two words\nA=1\n" {
		t.Errorf("environment inside = %q, want exactly the Command's", out)
	}
}

// TestWorkingDirectoryAndExitCode: the command starts in the input root
// path + working_directory, and its exit code is a result with status OK.
func TestWorkingDirectoryAndExitCode(t *testing.T) {
	e := newTestEnv(t, nil)
	a := e.newAction(t)
	if err := os.MkdirAll(filepath.Join(a.root, "sub/dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	req := a.request("/bin/sh", "-c", "/bin/pwd; exit 7")
	req.WorkingDirectory = "sub/dir"
	resp := e.run(t, req)
	if resp.StatusCode != 0 || resp.ExitCode != 7 || resp.Signal != 0 {
		t.Fatalf("status %d %q exit %d signal %d, want OK and exit 7", resp.StatusCode, resp.StatusMessage, resp.ExitCode, resp.Signal)
	}
	if out, _ := a.output(t); out != "/work/sub/dir\n" {
		t.Errorf("pwd = %q, want /work/sub/dir", out)
	}
	if resp.Usage.GetWallTime().AsDuration() <= 0 || resp.Usage.GetMaxRssBytes() <= 0 || !resp.ExecutionCompleted.AsTime().After(resp.ExecutionStart.AsTime().Add(-time.Nanosecond)) {
		t.Errorf("usage/timestamps not filled: %v", resp)
	}

	// A symlink that stays inside the root is followed.
	if err := os.Symlink("sub/dir", filepath.Join(a.root, "link")); err != nil {
		t.Fatal(err)
	}
	req.WorkingDirectory = "link"
	if resp := e.run(t, req); resp.StatusCode != 0 || resp.ExitCode != 7 {
		t.Errorf("working directory through a symlink inside the root: %s %q exit %d", codes.Code(resp.StatusCode), resp.StatusMessage, resp.ExitCode)
	}

	// A working directory missing from the input root is the request's fault.
	req.WorkingDirectory = "missing"
	if resp := e.run(t, req); codes.Code(resp.StatusCode) != codes.InvalidArgument || !strings.Contains(resp.StatusMessage, "missing") {
		t.Errorf("missing working directory: %s %q", codes.Code(resp.StatusCode), resp.StatusMessage)
	}
}

// TestInputRootPathOverride: InputRootAbsolutePath moves the input root
// (and so the working directory), even to a path the host lacks.
func TestInputRootPathOverride(t *testing.T) {
	e := newTestEnv(t, nil)
	a := e.newAction(t)
	req := a.request("/bin/sh", "-c", "/bin/pwd && echo hi > made")
	req.Platform = []*runnerpb.Property{{Name: "InputRootAbsolutePath", Value: "/b/f/w"}}
	resp := e.run(t, req)
	mustSucceed(t, a, resp)
	if out, _ := a.output(t); out != "/b/f/w\n" {
		t.Errorf("pwd = %q, want /b/f/w", out)
	}
	if b, err := os.ReadFile(filepath.Join(a.root, "made")); err != nil || string(b) != "hi\n" {
		t.Errorf("output through the moved input root: %q, %v", b, err)
	}
}

// TestOutputsAndInputs: the action creates outputs in the input root that
// the worker side sees, owned by the sandbox user's host uid; it can
// neither write nor chmod an input file hard-linked from the worker's
// cache, and the cached file keeps its content, mode and inode.
func TestOutputsAndInputs(t *testing.T) {
	e := newTestEnv(t, nil)
	a := e.newAction(t)
	cacheDir := filepath.Join(e.build, "cache")
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cached := filepath.Join(cacheDir, "blob")
	if err := os.WriteFile(cached, []byte("input bytes\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(a.root, "src"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(cached, filepath.Join(a.root, "src/in.txt")); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(cached)
	if err != nil {
		t.Fatal(err)
	}
	script := `cat src/in.txt
echo overwritten > src/in.txt && echo WROTE
echo appended >> src/in.txt && echo APPENDED
chmod 0666 src/in.txt && echo CHMODDED
mkdir -p out/dir && echo result > out/dir/file && echo made > src/new.txt
exit 0`
	resp := e.run(t, a.request("/bin/sh", "-c", script))
	mustSucceed(t, a, resp)
	out, stderr := a.output(t)
	if out != "input bytes\n" {
		t.Errorf("stdout %q (stderr %q): the input must be readable and neither writable nor chmod-able", out, stderr)
	}
	after, err := os.Stat(cached)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(cached); string(b) != "input bytes\n" || after.Mode() != before.Mode() ||
		after.Sys().(*syscall.Stat_t).Ino != before.Sys().(*syscall.Stat_t).Ino || after.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("cached file changed: %q mode %v -> %v", b, before.Mode(), after.Mode())
	}
	for _, p := range []string{"out/dir/file", "src/new.txt"} {
		st, err := os.Stat(filepath.Join(a.root, p))
		if err != nil {
			t.Fatalf("output %s not visible to the worker: %v", p, err)
		}
		if uid := st.Sys().(*syscall.Stat_t).Uid; uid != testIDBase {
			t.Errorf("output %s owned by host uid %d, want %d (container root of slot 0)", p, uid, testIDBase)
		}
	}
}

// TestStartupRemovesStaleState: bundles and skeletons a crashed runner
// left are removed by New, and the state directory is 0711.
func TestStartupRemovesStaleState(t *testing.T) {
	requireRoot(t)
	base := searchableTempDir(t)
	state := filepath.Join(base, "state")
	for _, f := range []string{"bundles/3/config.json", "rootfs/0123/usr/.keep"} {
		p := filepath.Join(state, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e := newTestEnvIn(t, base, nil)
	if m, _ := filepath.Glob(filepath.Join(state, "bundles", "*", "*")); len(m) != 0 {
		t.Errorf("stale bundle files left: %v", m)
	}
	if _, err := os.Stat(filepath.Join(state, "rootfs", "0123")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale skeleton left: %v", err)
	}
	if st, err := os.Stat(state); err != nil || st.Mode().Perm() != 0o711 {
		t.Errorf("state dir mode %v, %v; want 0711", st.Mode(), err)
	}
	a := e.newAction(t)
	mustSucceed(t, a, e.run(t, a.request("/bin/true")))
}

// TestBundleConfig: the native launcher gets the spec in memory, so no
// config.json is ever written; for an external OCI runtime (runc, if
// installed) the launcher writes it, readable by root only, while the action
// runs, and removes it when the action ends.
func TestBundleConfig(t *testing.T) {
	runc, _ := exec.LookPath("runc")
	for _, tc := range []struct{ name, runtime string }{{"native", ""}, {"runc", runc}} {
		runtime := tc.runtime
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "runc" && runc == "" {
				t.Skip("runc not installed")
			}
			e := newTestEnv(t, func(c *Config) {
				c.Sandbox.Runtime = runtime
				if runtime != "" {
					c.Sandbox.RuntimeRoot = t.TempDir()
				}
			})
			a := e.newAction(t)
			done := make(chan *runnerpb.RunResponse, 1)
			go func() { done <- e.run(t, a.request("/bin/sh", "-c", "echo started; exec sleep 2")) }()
			waitFor(t, "the command to start", func() bool { out, _ := a.output(t); return out == "started\n" })
			configs, _ := filepath.Glob(filepath.Join(e.cfg.StateDir, "bundles", "*", "config.json"))
			if runtime == "" && len(configs) != 0 {
				t.Errorf("native launcher: %v written", configs)
			}
			if runtime != "" {
				if len(configs) != 1 {
					t.Fatalf("external runtime: bundle configs %v while the action runs, want one", configs)
				}
				if st, err := os.Stat(configs[0]); err != nil || st.Mode().Perm() != 0o600 {
					t.Errorf("%s: %v %v, want mode 0600", configs[0], st.Mode(), err)
				}
			}
			mustSucceed(t, a, <-done)
			if m, _ := filepath.Glob(filepath.Join(e.cfg.StateDir, "bundles", "*", "config.json")); len(m) != 0 {
				t.Errorf("bundle configs %v left after the action", m)
			}
		})
	}
}
