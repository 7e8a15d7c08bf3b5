//go:build linux && amd64

package sandbox

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// cloneArgs is the kernel's struct clone_args (clone3(2)), 88 bytes.
type cloneArgs struct {
	flags      uint64
	_          [3]uint64 // pidfd, child_tid, parent_tid: not used
	exitSignal uint64
	stack      uint64
	stackSize  uint64
	_          [3]uint64 // tls, set_tid, set_tid_size: not used
	cgroup     uint64
}

// vmChild is what the child of clone3VM reads (the assembly uses these
// offsets; TestVMChildLayout keeps them in step). It stays alive until
// the child has exec'd or exited. The child writes nothing but its own
// stack; the parent thread saves its signal mask in oldMask.
type vmChild struct {
	syncFd uintptr    // 0: the child reads one byte here (id maps written) before going on
	syncW  uintptr    // 8: the write end of that pipe, which the child closes first
	errFd  uintptr    // 16: it writes its errno (8 bytes) here if it fails
	path   uintptr    // 24: *byte, NUL-terminated
	argv   uintptr    // 32: **byte, nil-terminated
	envv   uintptr    // 40: **byte, nil-terminated
	fds    [5]uintptr // 48: dup3(fds[i], i) for i in 0..4; each above 4
	//lint:ignore U1000 written by the assembly (the thread's signal mask, restored after the clone)
	oldMask uint64 // 88
}

// clone3VM blocks every signal on the calling thread, calls clone3(args)
// and restores the thread's mask. Its child, on the stack args names, runs
// vmChildMain in assembly (see init_start_vm_amd64.s) and never returns.
//
//go:noescape
func clone3VM(args *cloneArgs, child *vmChild) (pid uintptr, errno uintptr)

// afterCloneVM, if set (by tests), runs in the parent right after the
// clone, while the child waits for its id maps; it is given the child's
// memory.
var afterCloneVM func(child []byte)

// cloneVMMissing is set once clone3 is found missing (Linux < 5.3, or a
// seccomp profile that refuses it with ENOSYS).
var cloneVMMissing atomic.Bool

// vmStackSize is the child's stack: it needs a few bytes; a page would
// do.
const vmStackSize = 8 << 10

// vmMemory is the memory the child uses after clone3 returns in the
// parent: its vmChild (at the start) and its stack (the rest), in an
// anonymous mapping of their own, unmapped once the child has exec'd or
// exited. Not Go memory: the compiler may put a local that does not
// escape on the goroutine's stack, and the runtime moves a goroutine's
// stack when it grows or when the GC shrinks it, which can happen while
// the child still runs (the parent writes the id maps, then waits in the
// poller); the child, still at the old address, would then read and write
// memory the runtime has freed and may have given to another goroutine.
type vmMemory struct {
	mem   []byte
	child *vmChild
	stack uintptr // the top of the child's stack (it grows down), 16-byte aligned
}

func mapVMMemory() (*vmMemory, error) {
	size := os.Getpagesize() + vmStackSize
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, os.NewSyscallError("mmap", err)
	}
	base := uintptr(unsafe.Pointer(&mem[0]))
	return &vmMemory{mem: mem, child: (*vmChild)(unsafe.Pointer(&mem[0])), stack: (base + uintptr(size)) &^ 15}, nil
}

// unmap releases the child's memory once it has exec'd or exited; Munmap
// of a mapping this process made cannot fail.
func (m *vmMemory) unmap() { _ = unix.Munmap(m.mem) }

// vmPipes are the descriptors startVM makes for the child: copies of its
// files (fds) and the sync and error pipes' ends it uses, which the
// parent closes once the child has them; and the parent's end of the
// error pipe (errR).
type vmPipes struct {
	fds   []int
	syncW int
	errR  *os.File
}

// startVM starts the init with clone3(CLONE_VM) (see initStart).
func (st *initStart) startVM(cgroupFD int) (int, error) {
	if cloneVMMissing.Load() {
		return 0, errNoCloneVM
	}
	path, err := syscall.BytePtrFromString(st.path)
	if err != nil {
		return 0, err
	}
	argv, err := syscall.SlicePtrFromStrings(st.argv)
	if err != nil {
		return 0, err
	}
	env, err := syscall.SlicePtrFromStrings(st.env)
	if err != nil {
		return 0, err
	}
	m, err := mapVMMemory()
	if err != nil {
		return 0, err
	}
	// Unmapped only after the child's exec or exit (the error pipe's EOF
	// below, or its reaping), when it no longer uses the mapping.
	defer m.unmap()
	c := m.child
	c.path = uintptr(unsafe.Pointer(path))
	c.argv = uintptr(unsafe.Pointer(&argv[0]))
	c.envv = uintptr(unsafe.Pointer(&env[0]))
	p, err := st.vmPipes(c)
	if err != nil {
		return 0, err
	}
	defer p.close()
	defer p.errR.Close()
	pid, err := st.cloneVM(m, cgroupFD)
	if err != nil {
		return 0, err
	}
	if afterCloneVM != nil {
		afterCloneVM(m.mem)
	}
	// The child waits on the sync pipe for its id maps. Without them (an
	// error) it reads EOF and exits.
	mapErr := writeIDMaps(pid, st.clone.UIDs, st.clone.GIDs)
	if mapErr == nil {
		if _, err := unix.Write(p.syncW, []byte{1}); err != nil {
			mapErr = os.NewSyscallError("write", err)
		}
	}
	// Drop our copies of the child's ends: EOF on errR then means the
	// child's went away, at its exec (close-on-exec, after the kernel
	// switched it to its own memory) or its exit.
	p.close()
	var status [8]byte
	n, _ := io.ReadFull(p.errR, status[:])
	// The strings the child's execve reads are Go memory (never moved).
	runtime.KeepAlive(path)
	runtime.KeepAlive(argv)
	runtime.KeepAlive(env)
	if mapErr == nil && n == 0 {
		return pid, nil
	}
	// The child is exiting: reap it.
	ws := reapChild(pid)
	switch {
	case mapErr != nil:
		return 0, fmt.Errorf("id mappings of the init: %w", mapErr)
	case n == len(status):
		return 0, &os.PathError{Op: "exec", Path: st.path, Err: syscall.Errno(binary.NativeEndian.Uint64(status[:]))}
	}
	return 0, fmt.Errorf("start init: child ended before its exec (%v)", ws)
}

// vmPipes copies st's files above 4 (so that no dup3 in the child
// overwrites another's source) and makes the sync and error pipes, and
// writes the child's descriptors into c.
func (st *initStart) vmPipes(c *vmChild) (p *vmPipes, err error) {
	p = &vmPipes{}
	defer func() {
		if err != nil {
			p.close()
			if p.errR != nil {
				p.errR.Close()
			}
		}
	}()
	for i, f := range st.files {
		// Fd puts a file in blocking mode, as os/exec's does: these are
		// the child's ends.
		fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, len(c.fds))
		if err != nil {
			return p, os.NewSyscallError("fcntl", err)
		}
		p.fds = append(p.fds, fd)
		c.fds[i] = uintptr(fd)
	}
	var syncP, errP [2]int
	if err := unix.Pipe2(syncP[:], unix.O_CLOEXEC); err != nil {
		return p, os.NewSyscallError("pipe2", err)
	}
	p.fds = append(p.fds, syncP[0], syncP[1])
	p.syncW = syncP[1]
	if err := unix.Pipe2(errP[:], unix.O_CLOEXEC); err != nil {
		return p, os.NewSyscallError("pipe2", err)
	}
	p.fds = append(p.fds, errP[1])
	// Our end of the error pipe, read through the poller.
	if err := unix.SetNonblock(errP[0], true); err != nil {
		unix.Close(errP[0])
		return p, os.NewSyscallError("fcntl", err)
	}
	p.errR = os.NewFile(uintptr(errP[0]), "init exec status")
	c.syncFd, c.syncW, c.errFd = uintptr(syncP[0]), uintptr(syncP[1]), uintptr(errP[1])
	return p, nil
}

// close closes the child's descriptors (once).
func (p *vmPipes) close() {
	for _, fd := range p.fds {
		unix.Close(fd)
	}
	p.fds = nil
}

// cloneVM clones the child on m's stack, in st's namespaces (and in the
// cgroup cgroupFD, if >= 0), and returns its pid.
func (st *initStart) cloneVM(m *vmMemory, cgroupFD int) (int, error) {
	args := &cloneArgs{
		flags:      uint64(st.clone.Flags) | unix.CLONE_VM,
		exitSignal: uint64(unix.SIGCHLD),
		stack:      uint64(m.stack - vmStackSize),
		stackSize:  vmStackSize,
	}
	if cgroupFD >= 0 {
		args.flags |= unix.CLONE_INTO_CGROUP
		args.cgroup = uint64(cgroupFD)
	}
	syscall.ForkLock.Lock()
	r, errno := clone3VM(args, m.child)
	syscall.ForkLock.Unlock()
	switch syscall.Errno(errno) {
	case 0:
		return int(r), nil
	case syscall.ENOSYS:
		cloneVMMissing.Store(true)
		return 0, errNoCloneVM
	case syscall.EPERM:
		// A seccomp profile may refuse clone3 alone (so that libcs fall
		// back to clone): let the fork try. If the namespaces themselves
		// are refused, it fails the same way.
		return 0, errNoCloneVM
	}
	return 0, os.NewSyscallError("clone3", syscall.Errno(errno))
}
