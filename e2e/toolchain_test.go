package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/images/imagetest"
	"github.com/paddock-build/paddock/internal/grpctest"
)

// containerScript starts the runner as the worker pod's runner container
// would run: in a mount namespace of its own (unshare) whose root is the
// toolchain image's rootfs ($1, pivot_root), with the host's /proc, /sys
// and /dev, the installer's volume ($2/paddock-bin) read-only at /paddock,
// and the pod's shared volume ($2: build directories, socket, config $3) at
// the same path as in the worker's container. It runs the installed
// binary, which is all of Paddock the toolchain image has. The host's old
// root is unmounted with the host's static busybox (the host's umount
// needs a dynamic loader the new root does not have).
const containerScript = `
R=$1 S=$2
mount --rbind "$R" "$R"
for d in proc sys dev; do mount --rbind "/$d" "$R/$d"; done
mkdir -p "$R$S"
mount --bind "$S" "$R$S"
mount --bind "$S/paddock-bin" "$R/paddock"
mount -o remount,bind,ro "$R/paddock"
cd "$R"
mkdir -p .host
pivot_root . .host
/.host/bin/busybox umount -l /.host
exec /paddock/paddock runner --config "$3"
`

// runnerCapabilities are all the capabilities the runner keeps (setpriv's
// syntax); docs/deployment.md says why each is needed. In the toolchain
// test the runner also keeps CAP_SYS_ADMIN, which its wrapper needs for
// the mounts and pivot_root that stand in for a container runtime.
const runnerCapabilities = "+setuid,+setgid,+chown,+dac_override"

// workerCapabilities are all the capabilities the worker keeps, as root:
// it reads outputs and removes directories that belong to sandbox uids.
const workerCapabilities = "+dac_override"

// TestRunnerInstalledInToolchainImage: a toolchain image's rootfs (a
// static busybox and a marker file, no paddock) gets the binary the way
// the installer image does it (`paddock install` into a volume); the
// runner starts from the installed copy inside that rootfs; an action
// without container-image, sent through a worker on the host, gets the
// toolchain as its root: it sees the marker, not the host's files nor the
// runner's volumes.
func TestRunnerInstalledInToolchainImage(t *testing.T) {
	needPaddock(t)
	bb := imagetest.Busybox(t)
	rootfs, shared := searchableTempDir(t), searchableTempDir(t)
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "tmp", "paddock"} {
		if err := os.Mkdir(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(rootfs, "bin/busybox"), string(bb), 0o755)
	for _, applet := range []string{"sh", "cat", "ls", "sleep", "mkdir", "chmod"} {
		if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(rootfs, "etc/toolchain-release"), "toolchain 1.0\n", 0o644)

	// The installer init container.
	if out, err := exec.Command(paddockBin, "install", filepath.Join(shared, "paddock-bin")).CombinedOutput(); err != nil {
		t.Fatalf("paddock install: %v\n%s", err, out)
	}
	cfg := writeRunnerConfig(t, shared, "host_hidden_paths: [/proc, /sys, /dev, /tmp, /paddock]\n")
	runner, _ := tryStartOrFail(t, "runner-in-toolchain", runnerReady,
		"setpriv", "--bounding-set=-all,+sys_admin,"+runnerCapabilities, "--inh-caps=-all",
		"unshare", "--mount", "--propagation", "private", "/bin/sh", "-ec", containerScript, "sh", rootfs, shared, cfg)
	p := startAroundRunner(t, shared)

	cmd := &repb.Command{
		Arguments:            []string{"/bin/sh", "-c", "cat /etc/toolchain-release; ls /"},
		EnvironmentVariables: []*repb.Command_EnvironmentVariable{{Name: "PATH", Value: "/bin"}},
	}
	_, stdout, stderr := p.client.run(t.Context(), action{cmd: cmd, doNotCache: true})
	t.Logf("in the toolchain: stdout %q, stderr %q", stdout, stderr)
	if !strings.HasPrefix(stdout, "toolchain 1.0\n") {
		t.Errorf("the action did not see the toolchain's /etc/toolchain-release: stdout %q, stderr %q", stdout, stderr)
	}
	for _, name := range strings.Fields(strings.TrimPrefix(stdout, "toolchain 1.0\n")) {
		if name == "usr" || name == "paddock" {
			t.Errorf("the action sees /%s (the host's, or the installed binary): ls / = %q", name, stdout)
		}
	}
	p.checkPrivateOutputsAndTimeout(t)
	p.stop(t, runner)
}

// TestRunnerAndWorkerCapabilities: on a host (as under the systemd
// units), the runner works with runnerCapabilities alone and the worker
// with workerCapabilities alone: sandboxes start, private outputs are
// collected, a timed-out action is killed, build directories are removed.
func TestRunnerAndWorkerCapabilities(t *testing.T) {
	needPaddock(t)
	shared := searchableTempDir(t)
	cfg := writeRunnerConfig(t, shared, "")
	runner, _ := tryStartOrFail(t, "runner", runnerReady,
		"setpriv", "--bounding-set=-all,"+runnerCapabilities, "--inh-caps=-all", paddockBin, "runner", "--config", cfg)
	p := startAroundRunner(t, shared)
	_, stdout, _ := p.client.run(t.Context(), action{cmd: shell("echo ran"), doNotCache: true})
	if stdout != "ran\n" {
		t.Errorf("stdout %q, want %q", stdout, "ran\n")
	}
	p.checkPrivateOutputsAndTimeout(t)
	p.stop(t, runner)
}

var runnerReady = regexp.MustCompile(`^paddock runner listening on (\S+)`)

// writeRunnerConfig writes a runner config with its socket and state under
// shared, a cgroup parent of its own, and extra; it returns its path.
func writeRunnerConfig(t *testing.T, shared, extra string) string {
	t.Helper()
	cfg := filepath.Join(shared, "runner.yaml")
	writeFile(t, cfg, "version: 1\nsocket: "+filepath.Join(shared, "run/runner.sock")+"\nstate_dir: "+filepath.Join(shared, "runner")+
		"\nsandbox:\n  cgroup_parent: paddock-e2e-capabilities\n"+extra, 0o644)
	return cfg
}

// pod is storage, a scheduler and a worker (with workerCapabilities only)
// around a runner started by the test, its socket and worker directory
// under shared.
type pod struct {
	storage, sched, worker *process
	client                 *client
	work                   string
}

func startAroundRunner(t *testing.T, shared string) *pod {
	t.Helper()
	p := &pod{work: filepath.Join(shared, "work")}
	var storageAddr, schedAddr string
	p.storage, storageAddr = startProcess(t, "storage", regexp.MustCompile(`^paddock storage listening on (\S+)`),
		"storage", "--listen", "127.0.0.1:0", "--dir", filepath.Join(shared, "storage"))
	p.sched, schedAddr = startProcess(t, "scheduler", regexp.MustCompile(`^paddock scheduler listening on (\S+)`),
		"scheduler", "--listen", "127.0.0.1:0", "--storage", storageAddr)
	p.worker, _ = tryStartOrFail(t, "worker", nil, "setpriv", "--bounding-set=-all,"+workerCapabilities, "--inh-caps=-all",
		paddockBin, "worker", "--id", "w", "--concurrency", "1", "--scheduler", schedAddr, "--storage", storageAddr,
		"--runner", filepath.Join(shared, "run/runner.sock"), "--dir", p.work)
	admin := workerpb.NewAdminServiceClient(grpctest.Dial(t, schedAddr))
	waitFor(t, "worker connected", faultLimit, func() bool {
		resp, err := admin.ListWorkers(t.Context(), &workerpb.ListWorkersRequest{})
		return err == nil && len(resp.GetWorkers()) == 1 && resp.GetWorkers()[0].Connected
	})
	p.client = newSplitClient(t, storageAddr, schedAddr)
	return p
}

// checkPrivateOutputsAndTimeout runs what needs the roles' capabilities:
// outputs only their owner (a sandbox uid) may read, and an action past
// its timeout, killed with sandbox processes of another uid.
func (p *pod) checkPrivateOutputsAndTimeout(t *testing.T) {
	t.Helper()
	private := &repb.Command{
		Arguments:            []string{"/bin/sh", "-c", "mkdir -p out/d && echo secret > out/d/f && chmod 600 out/d/f && chmod 700 out/d out"},
		EnvironmentVariables: []*repb.Command_EnvironmentVariable{{Name: "PATH", Value: "/bin"}},
		OutputDirectories:    []string{"out"},
	}
	if res, _, stderr := p.client.run(t.Context(), action{cmd: private, doNotCache: true}); len(res.GetOutputDirectories()) != 1 {
		t.Errorf("private outputs: %v, stderr %q; want the directory out", res, stderr)
	}
	sleep := &repb.Command{Arguments: []string{"/bin/sleep", "600"}}
	ctx := t.Context()
	resp, err := p.client.execute(ctx, p.client.prepare(ctx, action{cmd: sleep, doNotCache: true, timeout: 2 * time.Second}), true)
	if err != nil || status.FromProto(resp.GetStatus()).Code() != codes.DeadlineExceeded {
		t.Errorf("an action past its timeout: %v, %v; want DEADLINE_EXCEEDED", resp, err)
	}
}

// stop stops the worker (and checks it removed its build directories),
// the runner, the scheduler and storage.
func (p *pod) stop(t *testing.T, runner *process) {
	t.Helper()
	p.worker.stop(os.Interrupt)
	if left, _ := os.ReadDir(filepath.Join(p.work, "builds")); len(left) > 0 {
		t.Errorf("build directories left behind: %v", left)
	}
	runner.stop(os.Interrupt)
	p.sched.stop(os.Interrupt)
	p.storage.stop(os.Interrupt)
	checkNoProcessesLeft(t)
}

func tryStartOrFail(t *testing.T, name string, ready *regexp.Regexp, exe string, args ...string) (*process, string) {
	t.Helper()
	p, addr, err := tryStartExecutable(t, name, ready, exe, args...)
	if err != nil {
		t.Fatal(err)
	}
	return p, addr
}

func writeFile(t *testing.T, path, body string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
}
