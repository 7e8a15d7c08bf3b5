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
)

// containerScript starts the runner as the worker pod's runner container
// would run: in a mount namespace of its own (unshare) whose root is the
// toolchain image's rootfs ($1, pivot_root), with the host's /proc, /sys
// and /dev, the installer's volume ($2/paddock-bin) read-only at /paddock,
// and the pod's shared volume ($2: build directories, socket, config) at
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
exec /paddock/paddock runner --config "$S/runner.yaml"
`

// runnerCapabilities are all the capabilities the runner container keeps
// (setpriv's syntax); docs/deployment.md says why each is needed.
const runnerCapabilities = "+sys_admin,+setuid,+setgid,+chown,+dac_override"

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
	sock, work := filepath.Join(shared, "run/runner.sock"), filepath.Join(shared, "work")
	writeFile(t, filepath.Join(shared, "runner.yaml"), "socket: "+sock+"\nstate_dir: "+filepath.Join(shared, "runner")+
		"\nsandbox:\n  cgroup_parent: paddock-e2e-toolchain\nhost_hidden_paths: [/proc, /sys, /dev, /tmp, /paddock]\n", 0o644)
	runner, _ := tryStartOrFail(t, "runner-in-toolchain", regexp.MustCompile(`^paddock runner listening on (\S+)`),
		"setpriv", "--bounding-set=-all,"+runnerCapabilities, "--inh-caps=-all",
		"unshare", "--mount", "--propagation", "private", "/bin/sh", "-ec", containerScript, "sh", rootfs, shared)

	storage, storageAddr := startProcess(t, "storage", regexp.MustCompile(`^paddock storage listening on (\S+)`),
		"storage", "--listen", "127.0.0.1:0", "--dir", filepath.Join(shared, "storage"))
	sched, schedAddr := startProcess(t, "scheduler", regexp.MustCompile(`^paddock scheduler listening on (\S+)`),
		"scheduler", "--listen", "127.0.0.1:0", "--storage", storageAddr)
	worker, _ := tryStartOrFail(t, "worker", nil, "setpriv", "--bounding-set=-all,"+workerCapabilities, "--inh-caps=-all",
		paddockBin, "worker", "--id", "toolchain", "--concurrency", "1",
		"--scheduler", schedAddr, "--storage", storageAddr, "--runner", sock, "--dir", work)
	admin := workerpb.NewAdminServiceClient(dial(t, schedAddr))
	waitFor(t, "worker connected", faultLimit, func() bool {
		resp, err := admin.ListWorkers(t.Context(), &workerpb.ListWorkersRequest{})
		return err == nil && len(resp.GetWorkers()) == 1 && resp.GetWorkers()[0].Connected
	})

	c := newSplitClient(t, storageAddr, schedAddr)
	cmd := &repb.Command{
		Arguments:            []string{"/bin/sh", "-c", "cat /etc/toolchain-release; ls /"},
		EnvironmentVariables: []*repb.Command_EnvironmentVariable{{Name: "PATH", Value: "/bin"}},
	}
	_, stdout, stderr := c.run(t.Context(), action{cmd: cmd, doNotCache: true})
	t.Logf("in the toolchain: stdout %q, stderr %q", stdout, stderr)
	if !strings.HasPrefix(stdout, "toolchain 1.0\n") {
		t.Errorf("the action did not see the toolchain's /etc/toolchain-release: stdout %q, stderr %q", stdout, stderr)
	}
	for _, name := range strings.Fields(strings.TrimPrefix(stdout, "toolchain 1.0\n")) {
		if name == "usr" || name == "paddock" {
			t.Errorf("the action sees /%s (the host's, or the installed binary): ls / = %q", name, stdout)
		}
	}

	// Outputs only their owner (a sandbox uid) may read are collected.
	private := &repb.Command{
		Arguments:            []string{"/bin/sh", "-c", "mkdir -p out/d && echo secret > out/d/f && chmod 600 out/d/f && chmod 700 out/d out"},
		EnvironmentVariables: []*repb.Command_EnvironmentVariable{{Name: "PATH", Value: "/bin"}},
		OutputDirectories:    []string{"out"},
	}
	if res, _, stderr := c.run(t.Context(), action{cmd: private, doNotCache: true}); len(res.GetOutputDirectories()) != 1 {
		t.Errorf("private outputs: %v, stderr %q; want the directory out", res, stderr)
	}

	// An action past its timeout is killed, sandbox processes of another
	// uid included, with no CAP_KILL.
	sleep := &repb.Command{Arguments: []string{"/bin/sleep", "600"}}
	resp, err := c.execute(t.Context(), c.prepare(t.Context(), action{cmd: sleep, doNotCache: true, timeout: 2 * time.Second}), true)
	if err != nil || status.FromProto(resp.GetStatus()).Code() != codes.DeadlineExceeded {
		t.Errorf("an action past its timeout: %v, %v; want DEADLINE_EXCEEDED", resp, err)
	}

	worker.stop(os.Interrupt)
	// The worker removed the build directories, sandbox-owned files and all.
	if left, _ := os.ReadDir(filepath.Join(work, "builds")); len(left) > 0 {
		t.Errorf("build directories left behind: %v", left)
	}
	runner.stop(os.Interrupt)
	sched.stop(os.Interrupt)
	storage.stop(os.Interrupt)
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
