package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	rapb "github.com/bazelbuild/remote-apis/build/bazel/remote/asset/v1"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/internal/grpctest"
)

// TestUpDataUnderPrivateDirectory: `paddock up --data` inside a directory
// the sandboxes' unprivileged uids cannot search (root's home, mode 0700,
// where ~/.cache/paddock lies). Either up refuses to start and names the
// directory, or actions run anyway; what must not happen is a farm that
// comes up and fails every action.
func TestUpDataUnderPrivateDirectory(t *testing.T) {
	needPaddock(t)
	private := t.TempDir() // 0700, like /root
	if err := os.Chmod(private, 0o700); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(private, ".cache", "paddock")
	p, addr, err := tryStartProcess(t, "up", upReady, "up", "--data", data, "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0")
	if err != nil {
		if log := p.log(); !strings.Contains(log, private) {
			t.Errorf("paddock up refused to start without naming the directory at fault:\n%s", log)
		}
		return
	}
	f := &farm{process: p, addr: addr, data: data}
	c := newClient(t, f.addr)
	_, stdout, _ := c.run(t.Context(), action{cmd: shell("echo ran"), doNotCache: true})
	if stdout != "ran\n" {
		t.Errorf("stdout %q, want %q", stdout, "ran\n")
	}
	f.shutdown()
}

// TestSchedulerServesCapabilities: with the roles on separate machines,
// Bazel's --remote_executor names the scheduler (and --remote_cache the
// storage), and Bazel first asks the executor for its capabilities.
func TestSchedulerServesCapabilities(t *testing.T) {
	needPaddock(t)
	dir := searchableTempDir(t)
	storage, storageAddr := startProcess(t, "storage", regexp.MustCompile(`^paddock storage listening on (\S+)`),
		"storage", "--listen", "127.0.0.1:0", "--dir", filepath.Join(dir, "storage"))
	sched, schedAddr := startProcess(t, "scheduler", regexp.MustCompile(`^paddock scheduler listening on (\S+)`),
		"scheduler", "--listen", "127.0.0.1:0", "--storage", storageAddr)
	caps, err := repb.NewCapabilitiesClient(grpctest.Dial(t, schedAddr)).GetCapabilities(t.Context(), &repb.GetCapabilitiesRequest{})
	if err != nil {
		t.Fatalf("GetCapabilities from paddock scheduler: %v", err)
	}
	if !caps.GetExecutionCapabilities().GetExecEnabled() || caps.GetLowApiVersion().GetMajor() != 2 {
		t.Errorf("paddock scheduler's capabilities %v: want execution enabled and REv2 2.x", caps)
	}
	// The Remote Asset API, served by storage and forwarded by the
	// scheduler: an empty request is INVALID_ARGUMENT (BuildStream's probe).
	for name, addr := range map[string]string{"storage": storageAddr, "scheduler": schedAddr} {
		_, err := rapb.NewFetchClient(grpctest.Dial(t, addr)).FetchDirectory(t.Context(), &rapb.FetchDirectoryRequest{})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("empty FetchDirectory to paddock %s: %v; want INVALID_ARGUMENT", name, err)
		}
	}
	sched.stop(os.Interrupt)
	storage.stop(os.Interrupt)
}

// TestUpRestartKeepsCache: `paddock up` stopped with Ctrl-C and started
// again on the same data directory still has the action cache and the CAS:
// an action run before the restart is a cache hit after it, with its
// output readable.
func TestUpRestartKeepsCache(t *testing.T) {
	f, c := startUpClient(t)
	a := action{cmd: shell("echo kept > out.txt", "out.txt")}
	d := c.prepare(t.Context(), a)
	resp, err := c.execute(t.Context(), d, false)
	if err != nil || resp.CachedResult || len(resp.Result.GetOutputFiles()) != 1 {
		t.Fatalf("first Execute: %v, %v; want an executed result with one output file", resp, err)
	}
	f.shutdown()

	f = startUp(t, f.data)
	c = newClient(t, f.addr)
	again, err := c.execute(t.Context(), d, false)
	if err != nil || !again.CachedResult {
		t.Fatalf("Execute after the restart: %v, %v; want a cache hit", again, err)
	}
	out := again.Result.GetOutputFiles()
	if len(out) != 1 || out[0].Path != "out.txt" || string(c.read(t.Context(), out[0].Digest)) != "kept\n" {
		t.Errorf("output files after the restart %v, want out.txt = \"kept\\n\"", out)
	}
	f.shutdown()
}
