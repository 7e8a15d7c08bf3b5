package sandbox

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// TestCgroupV2Mechanics exercises the v2 code path on the hybrid test host,
// whose v2 hierarchy (/sys/fs/cgroup/unified) has no controllers: a process
// is forked straight into the cgroup (CLONE_INTO_CGROUP), killAll ends it
// (cgroup.kill) and remove deletes the cgroup. Limits and figures need the
// controllers and are not checked here.
func TestCgroupV2Mechanics(t *testing.T) {
	requireRoot(t)
	const mountpoint = "/sys/fs/cgroup/unified"
	var fs unix.Statfs_t
	if err := unix.Statfs(mountpoint, &fs); err != nil || fs.Type != unix.CGROUP2_SUPER_MAGIC {
		t.Skipf("no cgroup2 hierarchy at %s", mountpoint)
	}
	parent := filepath.Join(mountpoint, "paddock-sandbox-v2test")
	defer os.Remove(parent)
	cg, err := newCgroupV2(mountpoint, "/paddock-sandbox-v2test/1-1", &specs.LinuxResources{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cg.remove() }) // in case the test ends early; gone already otherwise
	cmd := startIn(t, cg, func() *exec.Cmd {
		return exec.Command(filepath.Join(testRootfs, "bin", "busybox"), "sleep", "1000")
	})
	b, _ := os.ReadFile("/proc/" + itoa(cmd.Process.Pid) + "/cgroup")
	if !strings.Contains(string(b), "0::/paddock-sandbox-v2test/1-1\n") {
		t.Errorf("process not born in the cgroup: %q", b)
	}
	cg.killAll()
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Errorf("killAll: process ended with %v", err)
	}
	if err := cg.remove(); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if _, err := os.Stat(cg.path); err == nil {
		t.Errorf("cgroup %s still there", cg.path)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestCheckCgroupsRefusesAMissingHierarchy: a launcher whose hierarchies
// are not mounted (a runner under `ip netns exec`) is refused at start,
// naming the hierarchy, instead of failing every action; with them, the
// sandboxes' parent is made in each.
func TestCheckCgroupsRefusesAMissingHierarchy(t *testing.T) {
	root := t.TempDir()
	for _, sub := range []string{"memory", "pids"} {
		if err := os.MkdirAll(filepath.Join(root, sub), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, sub, "cgroup.procs"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := checkCgroupsAt(root, "paddock-sandbox", []string{"memory", "pids", "cpu"}); err == nil || !strings.Contains(err.Error(), filepath.Join(root, "cpu")) {
		t.Fatalf("checkCgroupsAt without cpu: %v, want an error naming %s", err, filepath.Join(root, "cpu"))
	}
	if err := checkCgroupsAt(root, "paddock-sandbox", []string{"memory", "pids"}); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"memory", "pids"} {
		if st, err := os.Stat(filepath.Join(root, sub, "paddock-sandbox")); err != nil || !st.IsDir() {
			t.Errorf("%s: the sandboxes' parent was not made: %v", sub, err)
		}
	}
}
