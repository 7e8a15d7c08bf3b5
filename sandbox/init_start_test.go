package sandbox

import (
	"errors"
	"io"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/paddock-build/paddock/internal/timerslack"
)

// startShell starts /bin/sh as initStart starts an init (CLONE_VM where
// it can, or forked): in a new user namespace whose root is host uid
// 4242, with fd 3 a pipe to read a word from and fd 4 a pipe to answer
// on, from a thread with the farm's timer slack. The shell reports its
// uid, its blocked signals, its timer slack, and what it read.
func startShell(t *testing.T, vm bool) (answer string, exit syscall.WaitStatus) {
	t.Helper()
	requireRoot(t)
	defer func(v bool) { useCloneVM = v }(useCloneVM)
	useCloneVM = vm
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	inR, inW, _ := os.Pipe()
	outR, outW, _ := os.Pipe()
	defer inR.Close()
	defer outR.Close()
	st := &initStart{
		path:  "/bin/sh",
		argv:  []string{"sh", "-c", `read w <&3; echo "$(id -u) $(sed -n 's/^SigBlk:\t//p' /proc/self/status) $(cat /proc/self/timerslack_ns) $w" >&4`},
		env:   []string{"PATH=/usr/bin:/bin"},
		files: [5]*os.File{devNull, os.Stderr, os.Stderr, inR, outW},
		clone: cloneParams{
			Flags: syscall.CLONE_NEWUSER,
			UIDs:  []specs.LinuxIDMapping{{ContainerID: 0, HostID: 4242, Size: 1}},
			GIDs:  []specs.LinuxIDMapping{{ContainerID: 0, HostID: 4242, Size: 1}},
		},
	}
	pid, err := startWithFarmSlack(t, st)
	if err != nil {
		inW.Close()
		outW.Close()
		t.Fatalf("start: %v", err)
	}
	p := watchInit(pid)
	outW.Close()
	// The shell waits on fd 3 until it gets its word: still there.
	status, err := os.ReadFile("/proc/" + itoa(pid) + "/status")
	if err != nil {
		t.Errorf("status of the shell: %v", err)
	} else if !strings.Contains(string(status), "\nUid:\t4242\t4242\t4242\t4242\n") {
		t.Errorf("the shell's host ids are not the mapped ones:\n%s", status)
	}
	if _, err := inW.WriteString("hello\n"); err != nil {
		t.Errorf("giving the shell its word: %v", err)
	}
	inW.Close()
	b, _ := io.ReadAll(outR)
	<-p.exited
	return strings.TrimSpace(string(b)), p.status
}

func TestInitStart(t *testing.T) {
	for _, vm := range []bool{true, false} {
		name := "forked"
		if vm {
			name = "clone-vm"
		}
		t.Run(name, func(t *testing.T) {
			answer, ws := startShell(t, vm)
			// Container root, nothing blocked (the command forked later
			// inherits the mask), the kernel's default timer slack and not
			// the spawner's, fd 3 and 4 in place.
			if want := "0 0000000000000000 50000 hello"; answer != want {
				t.Errorf("the shell answered %q, want %q", answer, want)
			}
			if !ws.Exited() || ws.ExitStatus() != 0 {
				t.Errorf("the shell ended with %v", ws)
			}
		})
	}
}

// startWithFarmSlack starts st from a thread with the spawner's slack
// (timerslack.Farm), which the init must not inherit.
func startWithFarmSlack(t *testing.T, st *initStart) (int, error) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	prev, err := timerslack.Get()
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(timerslack.Farm.Nanoseconds()), 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(prev.Nanoseconds()), 0, 0, 0) }()
	pid, err := st.start(-1)
	if d, gerr := timerslack.Get(); gerr != nil || d != timerslack.Farm {
		t.Errorf("after the start the thread has slack %v (%v), want %v back", d, gerr, timerslack.Farm)
	}
	return pid, err
}

// The CLONE_VM path is the one taken on amd64 (elsewhere it must say it
// cannot run, and the fork is used).
func TestInitStartUsesCloneVM(t *testing.T) {
	requireRoot(t)
	st := userNSStart("/bin/true", "true")
	pid := startVMOrSkip(t, st)
	p := watchInit(pid)
	<-p.exited
	if !p.status.Exited() || p.status.ExitStatus() != 0 {
		t.Fatalf("true ended with %v", p.status)
	}
}

// A failed exec is the start's error, and leaves no child behind.
func TestInitStartExecError(t *testing.T) {
	for _, vm := range []bool{true, false} {
		requireRoot(t)
		func() {
			defer func(v bool) { useCloneVM = v }(useCloneVM)
			useCloneVM = vm
			st := userNSStart("/nonexistent/init", "init")
			_, err := st.start(-1)
			if !errors.Is(err, syscall.ENOENT) {
				t.Errorf("vm=%v: start of a missing program: %v, want ENOENT", vm, err)
			}
		}()
	}
}

// userNSStart is an initStart of path with argv in a new user namespace
// (host uid and gid 4242 as root), its descriptors 0–4 on stderr.
func userNSStart(path string, argv ...string) *initStart {
	st := &initStart{path: path, argv: argv, clone: cloneParams{Flags: syscall.CLONE_NEWUSER,
		UIDs: []specs.LinuxIDMapping{{HostID: 4242, Size: 1}}, GIDs: []specs.LinuxIDMapping{{HostID: 4242, Size: 1}}}}
	for i := range st.files {
		st.files[i] = os.Stderr
	}
	return st
}

// startVMOrSkip starts st with CLONE_VM, skipping the test where that
// cannot be done.
func startVMOrSkip(t *testing.T, st *initStart) int {
	t.Helper()
	pid, err := st.startVM(-1)
	if errors.Is(err, errNoCloneVM) {
		t.Skip("no clone3 with CLONE_VM here")
	}
	if err != nil {
		t.Fatal(err)
	}
	return pid
}
