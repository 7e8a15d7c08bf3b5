package sandbox

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestInitRunsFromSealedMemfd: every init runs from a memfd that no
// filesystem path reaches, sealed so that not even host root can write,
// grow, shrink or unseal it (CVE-2019-5736). Inside the sandboxes, the
// escape probe's attempts to write /proc/1/exe fail too (TestEscapesFail).
func TestInitRunsFromSealedMemfd(t *testing.T) {
	l := newTestLauncher(t, Options{})
	runsNormally(t, l) // leaves warm inits waiting for work
	var pid int
	deadline := time.Now().Add(10 * time.Second)
	for pid == 0 && time.Now().Before(deadline) {
		for _, p := range mappedProcesses(t) {
			if isWarmInit(p.pid) {
				pid = p.pid
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	if pid == 0 {
		t.Fatal("no warm init found")
	}
	exe := fmt.Sprintf("/proc/%d/exe", pid)
	target, err := os.Readlink(exe)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(target, "/memfd:paddock-sandbox-init") {
		t.Errorf("init runs from %q, want a memfd", target)
	}
	f, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
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
	w, err := os.OpenFile(exe, os.O_WRONLY, 0)
	if err == nil {
		defer w.Close()
		if _, err := w.Write([]byte("x")); !errors.Is(err, unix.EPERM) {
			t.Errorf("write to the init's memfd: %v, want EPERM", err)
		}
	} else if !errors.Is(err, unix.ETXTBSY) && !errors.Is(err, unix.EPERM) {
		t.Errorf("open the init's memfd for writing: %v", err)
	}
}
