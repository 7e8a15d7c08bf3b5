package sandbox

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/paddock-build/paddock/internal/proctest"
)

// TestInitRunsFromSealedMemfd: every init runs from a memfd that no
// filesystem path reaches, sealed so that not even host root can write,
// grow, shrink or unseal it (CVE-2019-5736). Inside the sandboxes, the
// escape probe's attempts to write /proc/1/exe fail too (TestEscapesFail).
func TestInitRunsFromSealedMemfd(t *testing.T) {
	l := newTestLauncher(t, Options{})
	runsNormally(t, l) // leaves warm inits waiting for work
	// A warm init of this launcher's spawner (others, of launchers being
	// closed, may come and go), opened before it can go away: the
	// descriptor then keeps its exe reachable.
	spawner := l.b.(*nativeBackend).spawnerPid()
	var exe, target string
	var f *os.File
	deadline := time.Now().Add(10 * time.Second)
	for f == nil {
		for _, p := range mappedProcesses(t) {
			if !isWarmInit(p.pid) || parentOf(p.pid) != spawner {
				continue
			}
			exe = fmt.Sprintf("/proc/%d/exe", p.pid)
			var err error
			if target, err = os.Readlink(exe); err != nil {
				continue // it went meanwhile
			}
			if f, err = os.Open(exe); err == nil {
				break
			}
		}
		if f == nil && time.Now().After(deadline) {
			t.Fatal("no warm init of this launcher found")
		}
		time.Sleep(5 * time.Millisecond) // polling, bounded by the deadline
	}
	defer f.Close()
	if !strings.HasPrefix(target, "/memfd:paddock-sandbox-init") {
		t.Errorf("init runs from %q, want a memfd", target)
	}
	seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE; seals&want != want {
		t.Errorf("seals %#x, want at least %#x", seals, want)
	}
	if err := unix.Ftruncate(int(f.Fd()), 0); err == nil {
		t.Error("the init's memfd could be truncated")
	}
	// Host root opening it for writing: refused outright (it is being
	// executed), or every write fails.
	w, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", f.Fd()), os.O_WRONLY, 0)
	if err == nil {
		defer w.Close()
		if _, err := w.Write([]byte("x")); !errors.Is(err, unix.EPERM) {
			t.Errorf("write to the init's memfd: %v, want EPERM", err)
		}
	} else if !errors.Is(err, unix.ETXTBSY) && !errors.Is(err, unix.EPERM) {
		t.Errorf("open the init's memfd for writing: %v", err)
	}
}

// parentOf returns pid's parent pid, or 0.
func parentOf(pid int) int {
	_, ppid, _ := proctest.Stat(pid)
	return ppid
}
