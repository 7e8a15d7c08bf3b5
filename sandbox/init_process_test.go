package sandbox

import (
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// startReleased starts name with args and hands it to watchInit, as the
// spawner does with an init.
func startReleased(t *testing.T, name string, args ...string) *initProcess {
	t.Helper()
	cmd := exec.Command(name, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	return watchInit(pid)
}

func awaitExit(t *testing.T, p *initProcess) {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("process %d not reaped", p.pid)
	}
}

func TestInitProcessReapsWithStatus(t *testing.T) {
	p := startReleased(t, "/bin/sh", "-c", "exit 3")
	awaitExit(t, p)
	if !p.status.Exited() || p.status.ExitStatus() != 3 {
		t.Fatalf("status %v, want exit 3", p.status)
	}
	// Reaped: the pid is free for reuse, and a late signal must go nowhere.
	p.signal(syscall.SIGKILL)
	if err := syscall.Kill(p.pid, 0); err == nil {
		t.Logf("pid %d already reused", p.pid)
	}
}

func TestInitProcessSignal(t *testing.T) {
	p := startReleased(t, "/bin/sh", "-c", "exec sleep 60")
	p.signal(syscall.SIGKILL)
	awaitExit(t, p)
	if !p.status.Signaled() || p.status.Signal() != syscall.SIGKILL {
		t.Fatalf("status %v, want killed by SIGKILL", p.status)
	}
	if p.usage.Utime.Usec < 0 || p.usage.Maxrss <= 0 {
		t.Fatalf("usage not filled: %+v", p.usage)
	}
}

// Without a pidfd (Linux < 5.3) the reaper waits in wait4 and a signal
// goes by pid while the process is not yet reaped.
func TestInitProcessWithoutPidfd(t *testing.T) {
	cmd := exec.Command("/bin/sh", "-c", "exec sleep 60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid // Release sets it to -1
	_ = cmd.Process.Release()
	p := &initProcess{pid: pid, exited: make(chan struct{})}
	go p.reap()
	p.signal(syscall.SIGTERM)
	awaitExit(t, p)
	if !p.status.Signaled() || p.status.Signal() != syscall.SIGTERM {
		t.Fatalf("status %v, want killed by SIGTERM", p.status)
	}
	p.signal(syscall.SIGKILL) // reaped: not sent
}
