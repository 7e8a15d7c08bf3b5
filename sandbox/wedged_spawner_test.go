package sandbox

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"
)

// A spawner that stays silent past a Run's timeout and kill_grace (here
// stopped with SIGSTOP) is taken for wedged and killed: the Run fails
// with ErrSpawnerGone, which callers retry, and the next Run gets a new
// spawner. An outside probe's stopped spawner had held every action, and
// its sandbox slot, without end.
func TestWedgedSpawnerIsReplaced(t *testing.T) {
	l := newTestLauncher(t, Options{KillGrace: 100 * time.Millisecond})
	b := l.b.(*nativeBackend)
	b.wedgedAfter = 200 * time.Millisecond
	bundle := writeBundle(t, testSpec("/bin/sleep", "1000"))
	done := make(chan error, 1)
	go func() {
		_, err := l.Run(context.Background(), Request{Bundle: bundle, Timeout: 500 * time.Millisecond})
		done <- err
	}()
	for deadline := time.Now().Add(10 * time.Second); len(sandboxProcessesNow(t)) < 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the sandbox did not start")
		}
	}
	old := b.spawnerPid()
	if err := syscall.Kill(old, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrSpawnerGone) {
			t.Errorf("Run of a wedged spawner: %v, want ErrSpawnerGone", err)
		}
	case <-time.After(60 * time.Second):
		_ = syscall.Kill(old, syscall.SIGCONT)
		t.Fatal("Run did not return while its spawner was wedged")
	}
	runsNormally(t, l)
	if b.spawnerPid() == old {
		t.Error("the wedged spawner was not replaced")
	}
}
