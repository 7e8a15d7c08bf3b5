package proctest

import (
	"os"
	"os/exec"
	"slices"
	"testing"
)

// This test process, and a child it starts, as /proc shows them.
func TestThisProcess(t *testing.T) {
	if !slices.Contains(PIDs(), os.Getpid()) {
		t.Fatalf("PIDs() lacks this process %d", os.Getpid())
	}
	state, ppid, ok := Stat(os.Getpid())
	if !ok || ppid != os.Getppid() || (state != "R" && state != "S") {
		t.Errorf("Stat(self) = %q, %d, %v; want R or S, %d, true", state, ppid, ok, os.Getppid())
	}
	if _, _, ok := Stat(-1); ok {
		t.Error("Stat of no process is ok")
	}
	var self *Process
	for _, p := range WithUIDIn(t, os.Getuid(), os.Getuid()+1) {
		if p.PID == os.Getpid() {
			self = &p
		}
	}
	if self == nil || self.UID != os.Getuid() || self.Cmdline == "" {
		t.Errorf("WithUIDIn(own uid) gives %+v for this process", self)
	}

	cmd := exec.Command("sleep", "1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if !HasChildren(os.Getpid()) {
		t.Error("HasChildren(self) is false with a child running")
	}
	if HasChildren(cmd.Process.Pid) {
		t.Error("HasChildren(sleep) is true")
	}
	if _, ppid, ok := Stat(cmd.Process.Pid); !ok || ppid != os.Getpid() {
		t.Errorf("Stat(child) parent %d, %v; want %d", ppid, ok, os.Getpid())
	}
}
