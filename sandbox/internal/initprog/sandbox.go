package main

import (
	"errors"
	"path"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/paddock-build/paddock/sandbox/internal/initplan"
)

// setupProcess sets what the sandbox's processes inherit from the init:
// host name, loopback, cgroup namespace, resource limits.
func setupProcess(plan *initplan.Plan) error {
	if plan.Hostname != "" {
		if err := unix.Sethostname([]byte(plan.Hostname)); err != nil {
			return wrap("sethostname", err)
		}
	}
	if plan.LoopbackUp {
		if err := loopbackUp(); err != nil {
			return err
		}
	}
	if plan.CgroupNS {
		// The init was born in the sandbox's cgroup: make it the root of
		// what the sandbox sees. Per thread: the command is forked from
		// this (locked) thread.
		if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
			return wrap("unshare cgroup namespace", err)
		}
	}
	for _, rl := range plan.Rlimits {
		lim := syscall.Rlimit{Cur: rl.Cur, Max: rl.Max}
		// syscall.Setrlimit, not unix: it also updates the RLIMIT_NOFILE
		// value Go restores in children.
		if err := syscall.Setrlimit(int(rl.Resource), &lim); err != nil {
			return wrap("setrlimit "+strconv.Itoa(int(rl.Resource)), err)
		}
	}
	return nil
}

// waitCommand waits for the command (pid), kills whatever it left behind
// in the sandbox, and reports how it ended with the resources all of them
// used.
func waitCommand(pid int) (*initplan.Status, error) {
	st := &initplan.Status{}
	for {
		var ws unix.WaitStatus
		wpid, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, wrap("wait", err)
		}
		if wpid != pid {
			continue
		}
		if ws.Signaled() {
			st.Signal = int32(ws.Signal())
			st.ExitCode = -1
		} else {
			st.ExitCode = int32(ws.ExitStatus())
		}
		break
	}
	// The command is gone: so is everything it left behind.
	_ = unix.Kill(-1, unix.SIGKILL)
	for {
		_, err := unix.Wait4(-1, nil, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			break
		}
	}
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_CHILDREN, &ru); err == nil {
		st.UserNanos = ru.Utime.Nano()
		st.SystemNanos = ru.Stime.Nano()
		st.MaxRSSKiB = ru.Maxrss
		st.MinorFaults = ru.Minflt
		st.MajorFaults = ru.Majflt
		st.VoluntarySwitches = ru.Nvcsw
		st.InvoluntarySwitches = ru.Nivcsw
	}
	return st, nil
}

// runSandbox sets the sandbox up as plan says, runs its command to the end
// and returns how it ended. An error means the command never ran.
func runSandbox(plan *initplan.Plan) (*initplan.Status, error) {
	rb := &rootfsBuilder{plan: plan}
	if err := rb.build(); err != nil {
		return nil, wrap("rootfs", err)
	}
	if err := setupProcess(plan); err != nil {
		return nil, err
	}
	unix.Umask(int(plan.Umask))
	argv0, err := lookPathIn(plan.Args[0], plan.Env, plan.Cwd)
	if err != nil {
		return nil, &notStarted{err}
	}

	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return nil, wrap("no_new_privs", err)
	}
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return nil, wrap("dumpable", err)
	}
	if err := applyCapabilities(plan); err != nil {
		return nil, err
	}
	if err := loadSeccomp(plan.Seccomp); err != nil {
		return nil, err
	}
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return nil, wrap("close_range", err)
	}

	pid, err := syscall.ForkExec(argv0, plan.Args, &syscall.ProcAttr{
		Dir:   plan.Cwd,
		Env:   plan.Env,
		Files: []uintptr{0, 1, 2},
		Sys: &syscall.SysProcAttr{
			Setsid:      true,
			Credential:  &syscall.Credential{Uid: plan.UID, Gid: plan.GID, Groups: plan.Groups},
			AmbientCaps: ambientList(plan),
		},
	})
	if err != nil {
		return nil, &notStarted{wrap("start "+plan.Args[0], err)}
	}
	if terminateRequested() {
		_ = unix.Kill(-1, unix.SIGTERM)
	}
	st, err := waitCommand(pid)
	if err != nil {
		return nil, err
	}
	return st, nil
}

// terminateRequested reports whether the spawner has written
// initplan.Terminate to the control pipe (without waiting for it).
func terminateRequested() bool {
	fds := []unix.PollFd{{Fd: controlFd, Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n == 0 || fds[0].Revents&unix.POLLIN == 0 {
			return false
		}
		var b [1]byte
		m, _ := unix.Read(controlFd, b[:])
		return m == 1 && b[0] == initplan.Terminate
	}
}

// applyCapabilities sets the calling thread's bounding and inheritable sets
// to the plan's, leaving its effective and permitted sets (the init still
// needs CAP_SETUID and friends to start the command). A command started as
// container root then gets exactly the bounding set; one started as another
// user gets the ambient set. Must run on the thread that forks the command.
func applyCapabilities(p *initplan.Plan) error {
	for c := uint32(0); c <= p.LastCap && c < 64; c++ {
		if p.Bounding&(1<<c) != 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			return wrap("drop bounding capability "+strconv.Itoa(int(c)), err)
		}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return wrap("capget", err)
	}
	// Ambient capabilities must be permitted and inheritable; the command
	// raises them itself (SysProcAttr.AmbientCaps) after changing user.
	inh := p.Inheritable | (p.Ambient & p.Bounding)
	data[0].Inheritable = uint32(inh)
	data[1].Inheritable = uint32(inh >> 32)
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return wrap("capset", err)
	}
	return nil
}

// ambientList returns the ambient capability numbers of the plan (only
// those in the bounding set can be raised).
func ambientList(p *initplan.Plan) []uintptr {
	var out []uintptr
	for c := uint(0); c < 64; c++ {
		if p.Ambient&p.Bounding&(1<<c) != 0 {
			out = append(out, uintptr(c))
		}
	}
	return out
}

// loadSeccomp installs the plan's filter on every thread of the calling
// process (SECCOMP_FILTER_FLAG_TSYNC). no_new_privs must already be set.
func loadSeccomp(prog []byte) error {
	if len(prog) == 0 {
		return nil
	}
	const insnSize = int(unsafe.Sizeof(unix.SockFilter{}))
	if len(prog)%insnSize != 0 || len(prog)/insnSize > 0xffff {
		return errors.New("seccomp: malformed program")
	}
	// Copy into properly typed (and aligned) instructions.
	insns := make([]unix.SockFilter, len(prog)/insnSize)
	for i := range insns {
		b := prog[i*insnSize:]
		insns[i] = unix.SockFilter{
			Code: uint16(b[0]) | uint16(b[1])<<8,
			Jt:   b[2],
			Jf:   b[3],
			K:    uint32(b[4]) | uint32(b[5])<<8 | uint32(b[6])<<16 | uint32(b[7])<<24,
		}
	}
	fprog := unix.SockFprog{Len: uint16(len(insns)), Filter: &insns[0]}
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	if errno != 0 {
		return wrap("seccomp", errno)
	}
	if r != 0 {
		return errors.New("seccomp: thread " + strconv.Itoa(int(r)) + " could not be synchronised")
	}
	return nil
}

// loopbackUp brings lo up in a fresh network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return wrap("loopback", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return wrap("loopback flags", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return wrap("loopback up", err)
	}
	return nil
}

// lookPathIn finds name in the PATH of env, inside the sandbox's root.
func lookPathIn(name string, env []string, cwd string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	pathVar := ""
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			pathVar = v
		}
	}
	for _, dir := range strings.Split(pathVar, ":") {
		if dir == "" {
			dir = "."
		}
		p := path.Join(dir, name)
		if !path.IsAbs(p) {
			p = path.Join(cwd, p)
		}
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Mode&0o111 != 0 {
			return p, nil
		}
	}
	return "", errors.New("executable " + strconv.Quote(name) + " not found in PATH " + strconv.Quote(pathVar))
}
