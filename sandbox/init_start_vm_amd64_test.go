//go:build linux && amd64

package sandbox

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The assembly (init_start_vm_amd64.s) reads vmChild at fixed offsets and
// passes cloneArgs to the kernel by size: a field moved here must move
// there too.
func TestVMChildLayout(t *testing.T) {
	var c vmChild
	checkOffsets(t, "vmChild", "the assembly reads it", []fieldOffset{
		{"syncFd", unsafe.Offsetof(c.syncFd), 0},
		{"syncW", unsafe.Offsetof(c.syncW), 8},
		{"errFd", unsafe.Offsetof(c.errFd), 16},
		{"path", unsafe.Offsetof(c.path), 24},
		{"argv", unsafe.Offsetof(c.argv), 32},
		{"envv", unsafe.Offsetof(c.envv), 40},
		{"fds", unsafe.Offsetof(c.fds), 48},
		{"oldMask", unsafe.Offsetof(c.oldMask), 88},
	})
	var a cloneArgs
	if unsafe.Sizeof(a) != 88 {
		t.Errorf("cloneArgs is %d bytes, the kernel's struct clone_args (as passed) 88", unsafe.Sizeof(a))
	}
	checkOffsets(t, "cloneArgs", "struct clone_args has it", []fieldOffset{
		{"flags", unsafe.Offsetof(a.flags), 0},
		{"exitSignal", unsafe.Offsetof(a.exitSignal), 32},
		{"stack", unsafe.Offsetof(a.stack), 40},
		{"stackSize", unsafe.Offsetof(a.stackSize), 48},
		{"cgroup", unsafe.Offsetof(a.cgroup), 80},
	})
}

type fieldOffset struct {
	name      string
	got, want uintptr
}

// checkOffsets reports each field of typ not at the offset where reader
// expects it.
func checkOffsets(t *testing.T, typ, reader string, fields []fieldOffset) {
	t.Helper()
	for _, f := range fields {
		if f.got != f.want {
			t.Errorf("%s.%s at offset %d, %s at %d", typ, f.name, f.got, reader, f.want)
		}
	}
}

// scribbled keeps the test's scribbled buffers alive until the child ran.
var scribbled [][]byte

// scribbleSink keeps scribbleStack's frame from being optimized away.
var scribbleSink atomic.Int64

// scribbleStack fills a 12 KiB frame of a new goroutine's stack with 0xff
// and holds it until release is closed.
func scribbleStack(filled *sync.WaitGroup, release chan struct{}) {
	var frame [12 << 10]byte
	for i := range frame {
		frame[i] = 0xff
	}
	filled.Done()
	<-release
	scribbleSink.Add(int64(frame[len(frame)/2]))
}

// growStack uses about n KiB of stack, so that a goroutine with less is
// moved to a larger stack.
//
//go:noinline
func growStack(n int) byte {
	var frame [1024]byte
	frame[n%1024] = byte(n)
	if n == 0 {
		return frame[0]
	}
	return growStack(n-1) + frame[(n*7)%1024]
}

// The child of the CLONE_VM start runs on memory shared with the spawner
// until its exec. When the spawner's goroutine stack moves meanwhile (it
// grows, or the GC shrinks it while the spawner waits for the exec) and
// the memory it left is reused, the child must still find its arguments
// and its stack: they are not on the goroutine's stack. The hook moves the
// stack while the child waits for its id maps, then fills fresh memory
// with 0xff; the command must still run, with its own exit status.
func TestInitStartVMSurvivesTheStackMoving(t *testing.T) {
	requireRoot(t)
	defer func() { afterCloneVM, scribbled = nil, nil }()
	var release chan struct{}
	afterCloneVM = func([]byte) {
		growStack(256)
		// The stack left behind went back to the runtime: to the heap
		// (a large one) or to its pool of small stacks. Fill fresh
		// memory of both kinds.
		for range 64 {
			b := make([]byte, 32<<10)
			for i := range b {
				b[i] = 0xff
			}
			scribbled = append(scribbled, b)
		}
		var filled sync.WaitGroup
		for range 32 {
			filled.Add(1)
			go scribbleStack(&filled, release)
		}
		filled.Wait()
	}
	st := userNSStart("/bin/sh", "sh", "-c", "exit 7")
	for i := range 20 {
		// A fresh goroutine each time: its stack is small, and the
		// hook's growth moves it.
		type started struct {
			pid int
			err error
		}
		c := make(chan started)
		release = make(chan struct{})
		go func() {
			pid, err := st.startVM(-1)
			c <- started{pid, err}
		}()
		s := <-c
		close(release)
		if errors.Is(s.err, errNoCloneVM) {
			t.Skip("no clone3 with CLONE_VM here")
		}
		if s.err != nil {
			t.Fatalf("start %d: %v", i, s.err)
		}
		p := watchInit(s.pid)
		<-p.exited
		if !p.status.Exited() || p.status.ExitStatus() != 7 {
			t.Fatalf("start %d: sh -c 'exit 7' ended with %v", i, p.status)
		}
		scribbled = nil
	}
}

// Each CLONE_VM start unmaps the memory it mapped for its child once the
// child has exec'd: mincore(2) on it then fails with ENOMEM.
func TestInitStartVMUnmapsItsMemory(t *testing.T) {
	requireRoot(t)
	defer func() { afterCloneVM = nil }()
	var addr, size uintptr
	afterCloneVM = func(child []byte) {
		addr, size = uintptr(unsafe.Pointer(&child[0])), uintptr(len(child))
	}
	st := userNSStart("/bin/true", "true")
	pid := startVMOrSkip(t, st)
	// At once, before anything else could map memory there.
	vec := make([]byte, 64)
	_, _, errno := unix.Syscall(unix.SYS_MINCORE, addr, size, uintptr(unsafe.Pointer(&vec[0])))
	<-watchInit(pid).exited
	if size == 0 || size > 64*uintptr(os.Getpagesize()) {
		t.Fatalf("the hook saw %d bytes of child memory", size)
	}
	if errno != unix.ENOMEM {
		t.Fatalf("mincore on the child's memory after the start: %v, want ENOMEM (unmapped)", errno)
	}
}
