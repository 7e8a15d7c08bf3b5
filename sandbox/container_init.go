package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The init is this binary re-executed by the spawner with clone flags for
// new user, mount, pid, ipc, uts and (usually) network namespaces. It runs
// as pid 1 of the sandbox, on one locked OS thread:
//
//  1. read its initConfig from fd 3 (a JSON value; the spawner closes the
//     pipe only once the init is in the sandbox's cgroup, and the init waits
//     for that before starting the command, so nothing escapes the cgroup);
//  2. build the mount tree and pivot_root into it (rootfsBuilder);
//  3. hostname, loopback up, a fresh cgroup namespace rooted at its cgroup,
//     rlimits, umask;
//  4. no_new_privs, dumpable 0, bounding/inheritable capabilities, the
//     seccomp filter, and close-on-exec on every descriptor above 2;
//  5. fork+exec the command as the spec's user, in a new session;
//  6. reap every process until the command exits, then SIGKILL everything
//     left, reap it, close its output pipes and write an initStatus to
//     fd 4 (the spawner answers on that, before the init's own exit).
//
// When the init exits, the kernel kills anything left in the pid namespace,
// and the mount namespace (with every mount made here) goes with it.

const (
	initConfigFd = 3
	initStatusFd = 4
)

// initConfig is what the spawner sends the init.
type initConfig struct {
	Spec    *specs.Spec
	Bundle  string
	Rootfs  string
	Network bool // a new network namespace: bring lo up
}

// initStatus is what the init reports. Error is set when the sandbox could
// not be set up (the command never ran).
type initStatus struct {
	Error string `json:",omitempty"`
	// NotStarted: the error is the command's (not found, not executable),
	// not the sandbox's.
	NotStarted bool `json:",omitempty"`
	ExitCode   int
	Signal     int
	Usage      Usage
}

// runInit is the init's whole life; it returns the process exit code.
func runInit() int {
	status := os.NewFile(initStatusFd, "status")
	st, err := initSandbox()
	if err != nil {
		st = &initStatus{Error: err.Error(), NotStarted: errors.Is(err, ErrCommandNotStarted)}
	}
	// Every process of the sandbox is gone; dropping our copies of the
	// output pipes and the status pipe lets the spawner answer now, while
	// the kernel tears down the namespaces as we exit.
	unix.Close(1)
	unix.Close(2)
	_ = json.NewEncoder(status).Encode(st)
	status.Close()
	if err != nil {
		return 1
	}
	return 0
}

func initSandbox() (*initStatus, error) {
	// Spec-independent work first: a warm init does it while it waits.
	last := lastCap()
	filter, err := defaultSeccompFilter()
	if err != nil {
		return nil, err
	}
	warmUpJSON()

	cfgFile := os.NewFile(initConfigFd, "config")
	defer cfgFile.Close()
	var cfg initConfig
	if err := json.NewDecoder(cfgFile).Decode(&cfg); err != nil {
		return nil, fmt.Errorf("read init config: %w", err)
	}
	spec := cfg.Spec
	caps, err := capabilityMask(spec.Process.Capabilities)
	if err != nil {
		return nil, err
	}

	rb := &rootfsBuilder{spec: spec, bundle: cfg.Bundle, rootfs: cfg.Rootfs}
	if err := rb.build(); err != nil {
		return nil, fmt.Errorf("rootfs: %w", err)
	}
	if spec.Hostname != "" && hasNamespace(spec, specs.UTSNamespace) {
		if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
			return nil, fmt.Errorf("sethostname: %w", err)
		}
	}
	if cfg.Network {
		if err := loopbackUp(); err != nil {
			return nil, err
		}
	}
	// Wait until the spawner has put us into the sandbox's cgroup.
	if _, err := io.Copy(io.Discard, cfgFile); err != nil {
		return nil, fmt.Errorf("wait for cgroup: %w", err)
	}
	if hasNamespace(spec, specs.CgroupNamespace) {
		// Now that the spawner has moved us into the sandbox's cgroup,
		// make it the root of what the sandbox sees. Per thread: the
		// command is forked from this (locked) thread.
		if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
			return nil, fmt.Errorf("unshare cgroup namespace: %w", err)
		}
	}
	for _, rl := range spec.Process.Rlimits {
		lim := syscall.Rlimit{Cur: rl.Soft, Max: rl.Hard}
		// syscall.Setrlimit, not unix: it also updates the RLIMIT_NOFILE
		// value Go restores in children.
		if err := syscall.Setrlimit(rlimitNames[rl.Type], &lim); err != nil {
			return nil, fmt.Errorf("setrlimit %s: %w", rl.Type, err)
		}
	}
	if spec.Process.User.Umask != nil {
		unix.Umask(int(*spec.Process.User.Umask))
	} else {
		unix.Umask(0o022)
	}
	argv0, err := lookPathIn(spec.Process.Args[0], spec.Process.Env, spec.Process.Cwd)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCommandNotStarted, err)
	}

	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("no_new_privs: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("dumpable: %w", err)
	}
	if err := applyCapabilities(caps, last); err != nil {
		return nil, err
	}
	if err := loadSeccomp(filter); err != nil {
		return nil, err
	}
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return nil, fmt.Errorf("close_range: %w", err)
	}

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGHUP)
	groups := make([]uint32, len(spec.Process.User.AdditionalGids))
	copy(groups, spec.Process.User.AdditionalGids)
	pid, err := syscall.ForkExec(argv0, spec.Process.Args, &syscall.ProcAttr{
		Dir:   spec.Process.Cwd,
		Env:   spec.Process.Env,
		Files: []uintptr{0, 1, 2},
		Sys: &syscall.SysProcAttr{
			Setsid:      true,
			Credential:  &syscall.Credential{Uid: spec.Process.User.UID, Gid: spec.Process.User.GID, Groups: groups},
			AmbientCaps: ambientList(caps),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: start %s: %w", ErrCommandNotStarted, spec.Process.Args[0], err)
	}
	// Forward termination requests from the spawner to every process in the
	// sandbox (kill(-1) from pid 1 reaches all of them but us).
	go func() {
		for s := range sigs {
			_ = unix.Kill(-1, s.(syscall.Signal))
		}
	}()
	st := &initStatus{}
	for {
		var ws unix.WaitStatus
		wpid, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("wait: %w", err)
		}
		if wpid != pid {
			continue
		}
		if ws.Signaled() {
			st.Signal = int(ws.Signal())
			st.ExitCode = -1
		} else {
			st.ExitCode = ws.ExitStatus()
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
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err == nil {
		st.Usage = usageFromRusage(&ru)
	}
	return st, nil
}

// warmUpJSON decodes a typical config once, so that encoding/json has
// built its decoders for the spec's types before the real one arrives.
func warmUpJSON() {
	spec := DefaultSpec("/", 1, "true")
	spec.Mounts = append(spec.Mounts, specs.Mount{Destination: "/work", Type: "bind", Source: "/", Options: []string{"rbind"}})
	limit := int64(1)
	spec.Linux.Resources.Pids = &specs.LinuxPids{Limit: &limit}
	spec.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &limit}
	data, err := json.Marshal(initConfig{Spec: spec})
	if err == nil {
		var cfg initConfig
		_ = json.Unmarshal(data, &cfg)
	}
}

func hasNamespace(s *specs.Spec, t specs.LinuxNamespaceType) bool {
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == t {
			return true
		}
	}
	return false
}

// loopbackUp brings lo up in a fresh network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback up: %w", err)
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
	return "", fmt.Errorf("executable %q not found in PATH %q", name, pathVar)
}
