package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestCtrlCLeavesNoCgroup: a Ctrl-C in the terminal running `paddock up`
// (SIGINT to its whole process group: up, the runner, and formerly the
// sandbox spawner, which died of it and left its cgroups behind) stops the
// farm with every sandbox cgroup it created removed.
func TestCtrlCLeavesNoCgroup(t *testing.T) {
	f, c := startUpClient(t)
	ctx := t.Context()
	d := c.prepare(ctx, action{cmd: shell("echo ran")})
	resp, err := c.execute(ctx, d, true)
	if err != nil || status.FromProto(resp.Status).Code() != codes.OK {
		t.Fatalf("action: %v, %v", resp, err)
	}
	spawners := childPIDs(f.runnerPID(), "paddock-sandbox-spawner")
	if len(spawners) != 1 {
		t.Fatalf("the runner has %d spawners (%v), want 1", len(spawners), spawners)
	}
	prefix := fmt.Sprintf("%d-", spawners[0])
	if len(sandboxCgroups(prefix)) == 0 {
		t.Fatal("no sandbox cgroup of the farm's spawner while it runs: the check below would prove nothing")
	}
	// What a terminal does on Ctrl-C: SIGINT to the foreground process
	// group (startProcess gave up a group of its own).
	if err := syscall.Kill(-f.cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-f.exited:
	case <-time.After(processStopTimeout):
		t.Fatalf("paddock up did not exit within %s of Ctrl-C", processStopTimeout)
	}
	checkNoProcessesLeft(t)
	if left := sandboxCgroups(prefix); len(left) != 0 {
		t.Errorf("after Ctrl-C, the farm's sandbox cgroups are left: %s", strings.Join(left, ", "))
	}
}

// sandboxCgroups lists the cgroups under the default sandbox parent, in
// any v1 hierarchy or the v2 one, whose name starts with prefix (a
// spawner's pid and a dash).
func sandboxCgroups(prefix string) []string {
	var out []string
	for _, dir := range []string{"memory", "pids", "cpu", "cpuacct", "freezer", ""} {
		p := filepath.Join("/sys/fs/cgroup", dir, "paddock-sandbox")
		ents, _ := os.ReadDir(p)
		for _, e := range ents {
			if e.IsDir() && strings.HasPrefix(e.Name(), prefix) {
				out = append(out, filepath.Join(p, e.Name()))
			}
		}
	}
	return out
}
