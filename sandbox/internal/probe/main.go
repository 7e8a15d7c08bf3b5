// Command probe runs inside a sandbox in the sandbox package's tests and
// reports, as JSON on stdout, what it can see and what it can do. It is
// built static (CGO_ENABLED=0) by the tests.
//
//	probe posture                 capabilities, namespaces, ids, fds, ...
//	probe escape HOSTPID BINARY   escape attempts, each with its errno
//	probe net PORT                connect to host 127.0.0.1:PORT; lo inside
//	probe hog MIB                 allocate and touch MIB MiB
//	probe tcpflood CONNS MIB      queue MIB MiB unread on CONNS loopback TCP connections
//	probe udpflood SOCKS MIB      send MIB MiB of datagrams to SOCKS sockets that never read
//	probe spin                    burn CPU forever
//	probe forkbomb                fork forever, ignoring SIGTERM and failed forks
//	probe write N                 write N bytes to stdout
//	probe exit CODE               print to stdout and stderr, exit CODE
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/paddock-build/paddock/sandbox/internal/probe/report"
)

func main() {
	// List descriptors before the Go runtime opens its own (netpoll).
	fds := openFDs()
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: probe MODE ...")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "posture":
		p := posture()
		p.FDs = fds
		emit(p)
	case "escape":
		// The pty made our controlling terminal hangs up when closed.
		signal.Ignore(syscall.SIGHUP)
		emit(escapes(os.Args[2], os.Args[3]))
	case "net":
		emit(network(os.Args[2]))
	case "hog":
		n, _ := strconv.Atoi(os.Args[2])
		var chunks [][]byte
		for i := 0; i < n; i++ {
			b := make([]byte, 1<<20)
			for j := 0; j < len(b); j += 4096 {
				b[j] = 1
			}
			chunks = append(chunks, b)
		}
		fmt.Println(len(chunks))
	case "tcpflood":
		conns, _ := strconv.Atoi(os.Args[2])
		mib, _ := strconv.Atoi(os.Args[3])
		emit(tcpFlood(conns, mib))
	case "udpflood":
		socks, _ := strconv.Atoi(os.Args[2])
		mib, _ := strconv.Atoi(os.Args[3])
		emit(udpFlood(socks, mib))
	case "spin":
		//lint:ignore SA5002 the probe burns CPU on purpose, for the CPU-limit tests.
		for {
		}
	case "forkbomb":
		// Every process, parent and child alike, forks again at once;
		// a refused fork (the pids limit) is simply tried again. A raw
		// fork copies only this thread, which never leaves the loop.
		signal.Ignore(syscall.SIGTERM)
		for {
			_, _, _ = syscall.RawSyscall(syscall.SYS_FORK, 0, 0, 0) // refused or not, fork again
		}
	case "write":
		n, _ := strconv.Atoi(os.Args[2])
		buf := make([]byte, 4096)
		for i := range buf {
			buf[i] = 'x'
		}
		for n > 0 {
			k := min(n, len(buf))
			_, _ = os.Stdout.Write(buf[:k]) // past a limit writes fail: that is what is probed
			n -= k
		}
	case "exit":
		code, _ := strconv.Atoi(os.Args[2])
		fmt.Println("to stdout")
		fmt.Fprintln(os.Stderr, "to stderr")
		os.Exit(code)
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", os.Args[1])
		os.Exit(2)
	}
}

func emit(v any) {
	if err := json.NewEncoder(os.Stdout).Encode(v); err != nil {
		os.Exit(3)
	}
}

func posture() report.Posture {
	var p report.Posture
	p.Status = map[string]string{}
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch k {
		case "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp":
			p.Status[k] = strings.TrimSpace(v)
		}
	}
	p.Namespaces = map[string]string{}
	for _, ns := range []string{"user", "mnt", "pid", "ipc", "uts", "net", "cgroup"} {
		l, err := os.Readlink("/proc/self/ns/" + ns)
		if err != nil {
			l = "error: " + err.Error()
		}
		p.Namespaces[ns] = l
	}
	u, _ := os.ReadFile("/proc/self/uid_map")
	g, _ := os.ReadFile("/proc/self/gid_map")
	p.UIDMap, p.GIDMap = strings.TrimSpace(string(u)), strings.TrimSpace(string(g))
	p.UID, p.GID = os.Getuid(), os.Getgid()
	p.Groups, _ = os.Getgroups()
	p.Hostname, _ = os.Hostname()
	p.Cwd, _ = os.Getwd()
	p.Env = os.Environ()
	p.Pid = os.Getpid()
	m, _ := os.ReadFile("/proc/self/mountinfo")
	p.Mounts = string(m)
	return p
}

// openFDs lists the descriptors open before the probe opened any of its own
// (Go's runtime may hold an epoll fd etc. only after the first file use,
// so read the directory with a raw getdents on a descriptor we exclude).
func openFDs() []int {
	dfd, err := unix.Open("/proc/self/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	defer unix.Close(dfd)
	buf := make([]byte, 8192)
	var fds []int
	for {
		n, err := unix.Getdents(dfd, buf)
		if err != nil || n <= 0 {
			break
		}
		_, _, names := unix.ParseDirent(buf[:n], -1, nil)
		for _, name := range names {
			fd, err := strconv.Atoi(name)
			if err == nil && fd != dfd {
				fds = append(fds, fd)
			}
		}
	}
	return fds
}

func attempt(name string, err error) report.Attempt {
	a := report.Attempt{Name: name}
	if err != nil {
		a.Err = err.Error()
		if e, ok := err.(syscall.Errno); ok {
			a.Errno = int(e)
		} else if pe, ok := err.(*os.PathError); ok {
			if e, ok := pe.Err.(syscall.Errno); ok {
				a.Errno = int(e)
			}
		}
	}
	return a
}

func errnoErr(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

func writeFile(p string) error {
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.Write([]byte("x"))
	return err
}

func escapes(hostPid, binary string) []report.Attempt {
	var out []report.Attempt
	pid, _ := strconv.Atoi(hostPid)
	for _, p := range []string{"/proc/1/exe", "/proc/self/exe", binary} {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		if err == nil {
			f.Close()
		}
		out = append(out, attempt("open-write "+p, err))
	}
	for fd := 0; fd < 3; fd++ {
		out = append(out, attempt(fmt.Sprintf("chdir /proc/self/fd/%d", fd), unix.Chdir(fmt.Sprintf("/proc/self/fd/%d", fd))))
	}
	out = append(out, attempt("chdir /proc/1/root", unix.Chdir("/proc/1/root")))
	out = append(out, attempt("write core_pattern", writeFile("/proc/sys/kernel/core_pattern")))
	out = append(out, attempt("write sysrq-trigger", writeFile("/proc/sysrq-trigger")))
	out = append(out, attempt("create /paddock-escape", func() error {
		f, err := os.Create("/paddock-escape")
		if err == nil {
			f.Close()
		}
		return err
	}()))
	out = append(out, attempt("tiocsti", tiocsti()))
	out = append(out, attempt("unshare user", unix.Unshare(unix.CLONE_NEWUSER)))
	out = append(out, attempt("unshare mount", unix.Unshare(unix.CLONE_NEWNS)))
	out = append(out, attempt("clone newuser", func() error {
		r, _, e := syscall.RawSyscall6(syscall.SYS_CLONE, uintptr(unix.CLONE_NEWUSER|syscall.SIGCHLD), 0, 0, 0, 0, 0)
		if e == 0 && r == 0 {
			_, _, _ = syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 0, 0, 0) // the child: does not return
		}
		if e == 0 {
			var ws syscall.WaitStatus
			_, _ = syscall.Wait4(int(r), &ws, 0, nil) // reaps the child; the probe reports the clone
		}
		return errnoErr(e)
	}()))
	out = append(out, attempt("mount tmpfs", unix.Mount("tmpfs", "/tmp", "tmpfs", 0, "")))
	out = append(out, attempt("umount /proc", unix.Unmount("/proc", unix.MNT_DETACH)))
	out = append(out, attempt("bpf map create", func() error {
		attr := [48]byte{}
		*(*uint32)(unsafe.Pointer(&attr[0])) = 2  // BPF_MAP_TYPE_ARRAY
		*(*uint32)(unsafe.Pointer(&attr[4])) = 4  // key size
		*(*uint32)(unsafe.Pointer(&attr[8])) = 4  // value size
		*(*uint32)(unsafe.Pointer(&attr[12])) = 1 // max entries
		r, _, e := syscall.Syscall(unix.SYS_BPF, 0, uintptr(unsafe.Pointer(&attr[0])), uintptr(len(attr)))
		if e == 0 {
			unix.Close(int(r))
		}
		return errnoErr(e)
	}()))
	out = append(out, attempt("keyctl join session", func() error {
		_, _, e := syscall.Syscall(unix.SYS_KEYCTL, unix.KEYCTL_JOIN_SESSION_KEYRING, 0, 0)
		return errnoErr(e)
	}()))
	out = append(out, attempt("socket af_vsock", func() error {
		fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM, 0)
		if err == nil {
			unix.Close(fd)
		}
		return err
	}()))
	out = append(out, machineBudgets()...)
	out = append(out, attempt("ptrace attach pid 1", unix.PtraceAttach(1)))
	out = append(out, attempt(fmt.Sprintf("ptrace attach host pid %d", pid), unix.PtraceAttach(pid)))
	out = append(out, attempt("setns own mnt ns", func() error {
		fd, err := unix.Open("/proc/self/ns/mnt", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Setns(fd, unix.CLONE_NEWNS)
	}()))
	return out
}

// tiocsti makes a fresh pty its controlling terminal and tries to push a
// character into its input queue, which the kernel would allow (the pty
// is ours, legacy_tiocsti=1) unless seccomp refuses the ioctl.
func tiocsti() error {
	ptmx, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open ptmx: %w", err)
	}
	defer unix.Close(ptmx)
	if err := unix.IoctlSetPointerInt(ptmx, unix.TIOCSPTLCK, 0); err != nil {
		return fmt.Errorf("unlockpt: %w", err)
	}
	n, err := unix.IoctlGetInt(ptmx, unix.TIOCGPTN)
	if err != nil {
		return fmt.Errorf("ptsname: %w", err)
	}
	pts, err := unix.Open(fmt.Sprintf("/dev/pts/%d", n), unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open pts: %w", err)
	}
	defer unix.Close(pts)
	if err := unix.IoctlSetInt(pts, unix.TIOCSCTTY, 0); err != nil {
		return fmt.Errorf("TIOCSCTTY: %w", err)
	}
	c := byte('x')
	_, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(pts), unix.TIOCSTI, uintptr(unsafe.Pointer(&c)))
	return errnoErr(e)
}

func network(port string) report.Net {
	var r report.Net
	c, err := net.Dial("tcp", "127.0.0.1:"+port)
	if err == nil {
		c.Close()
	} else {
		r.HostConnect = err.Error()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		r.LoopbackErr = err.Error()
	} else {
		go func() {
			if c, err := ln.Accept(); err == nil {
				_, _ = c.Write([]byte("ok")) // the probe's own dial reads it
				c.Close()
			}
		}()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			r.LoopbackErr = err.Error()
		} else {
			buf := make([]byte, 2)
			n, _ := c.Read(buf)
			r.LoopbackOK = string(buf[:n]) == "ok"
			c.Close()
		}
		ln.Close()
	}
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		r.Interfaces = append(r.Interfaces, i.Name+" "+i.Flags.String())
	}
	return r
}

// machineBudgets tries to take what the kernel counts for the whole
// machine, not per namespace: async I/O contexts (fs.aio-max-nr, which
// binds root too), ptys past the sandbox's own devpts bound (every
// non-host devpts instance shares kernel.pty.max), and secret memory. Each
// must fail.
func machineBudgets() []report.Attempt {
	var ctx uint64
	aio := func() error {
		_, _, e := syscall.Syscall(unix.SYS_IO_SETUP, 65536, uintptr(unsafe.Pointer(&ctx)), 0)
		return errnoErr(e)
	}()
	secret := func() error {
		r, _, e := syscall.Syscall(unix.SYS_MEMFD_SECRET, 0, 0, 0)
		if e == 0 {
			unix.Close(int(r))
		}
		return errnoErr(e)
	}()
	ptys := func() error {
		var fds []int
		defer func() {
			for _, fd := range fds {
				unix.Close(fd)
			}
		}()
		for range 1000 {
			fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("after %d ptys: %w", len(fds), err)
			}
			fds = append(fds, fd)
		}
		return nil
	}()
	a := attempt("open 1000 ptys", ptys)
	if errors.Is(ptys, unix.ENOSPC) {
		a.Errno = int(unix.ENOSPC)
	}
	core := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{Cur: 1 << 30, Max: 1 << 30})
	return []report.Attempt{attempt("io_setup 65536", aio), attempt("memfd_secret", secret), a, fallocateKeepSize(),
		attempt("raise RLIMIT_CORE", core)}
}

// fallocateKeepSize reserves 64 MiB past the end of an empty file in
// /tmp, which RLIMIT_FSIZE does not count.
func fallocateKeepSize() report.Attempt {
	f, err := os.CreateTemp("/tmp", "fallocate")
	if err != nil {
		return attempt("fallocate keep_size 64MiB", fmt.Errorf("create: %w", err))
	}
	defer os.Remove(f.Name())
	defer f.Close()
	return attempt("fallocate keep_size 64MiB", unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, 0, 64<<20))
}
