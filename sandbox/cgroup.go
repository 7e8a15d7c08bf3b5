package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// CgroupStats are the figures read from a sandbox's cgroup just before it is
// removed. Zero means the kernel did not offer the figure.
type CgroupStats struct {
	MemoryPeakBytes uint64        // v1 memory.max_usage_in_bytes, v2 memory.peak
	CPUTime         time.Duration // v1 cpuacct.usage, v2 cpu.stat usage_usec
	PidsPeak        uint64        // pids.peak where the kernel has it
	PidsLimitHits   uint64        // forks refused by the pids limit (pids.events max)
	OOMKills        uint64        // v1 memory.oom_control oom_kill, v2 memory.events oom_kill
}

// sandboxCgroup is one sandbox's cgroup. There are two implementations, for
// the v1 (legacy and hybrid hosts) and v2 (unified) hierarchies.
type sandboxCgroup interface {
	// start starts cmd so that it is born inside the cgroup: nothing it
	// does runs outside, and no process has to be migrated (on v1 that
	// costs an RCU grace period, several milliseconds).
	start(newCmd func() *exec.Cmd) (*exec.Cmd, error)
	// update applies the limits of res (the cgroup is created without
	// any while its init waits for work).
	update(res *specs.LinuxResources) error
	stats() CgroupStats
	// killAll SIGKILLs every process left in the cgroup.
	killAll()
	// remove deletes the cgroup, which must be empty.
	remove() error
}

// cgroupRoot is where the hierarchies are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// v1Subsystems are the v1 controllers a sandbox uses. Constant.
var v1Subsystems = []string{"memory", "pids", "cpu", "cpuacct"}

// newSandboxCgroup creates parent/name with the limits of res, using v2 when
// the host is unified and v1 otherwise (hybrid hosts keep their controllers
// in v1).
func newSandboxCgroup(parent, name string, res *specs.LinuxResources) (sandboxCgroup, error) {
	if res == nil {
		res = &specs.LinuxResources{}
	}
	group := "/" + parent + "/" + name
	if cgroups.Mode() == cgroups.Unified {
		return newCgroupV2(cgroupRoot, group, res)
	}
	hier := func() ([]cgroup1.Subsystem, error) {
		return []cgroup1.Subsystem{
			cgroup1.NewMemory(cgroupRoot), cgroup1.NewPids(cgroupRoot),
			cgroup1.NewCpu(cgroupRoot), cgroup1.NewCpuacct(cgroupRoot),
		}, nil
	}
	cg, err := cgroup1.New(cgroup1.StaticPath(group), res, cgroup1.WithHierarchy(hier))
	if err != nil {
		return nil, fmt.Errorf("create cgroup %s: %w", group, err)
	}
	return &cgroupV1{cg: cg, group: group}, nil
}

type cgroupV1 struct {
	cg    cgroup1.Cgroup
	group string
}

func (c *cgroupV1) path(sub, file string) string {
	return filepath.Join(cgroupRoot, sub, c.group, file)
}

// start moves the calling OS thread (only it: migrating oneself through the
// "tasks" file skips the global lock that migrating a process needs) into
// the cgroup, forks cmd from it, and moves the thread back.
func (c *cgroupV1) start(newCmd func() *exec.Cmd) (*exec.Cmd, error) {
	runtime.LockOSThread()
	orig, err := threadCgroupsV1()
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	move := func(group func(sub string) string) error {
		for _, sub := range v1Subsystems {
			if err := os.WriteFile(filepath.Join(cgroupRoot, sub, group(sub), "tasks"), []byte("0"), 0); err != nil {
				return fmt.Errorf("move thread to %s cgroup: %w", sub, err)
			}
		}
		return nil
	}
	back := func(sub string) string { return orig[sub] }
	if err := move(func(string) string { return c.group }); err != nil {
		if move(back) == nil {
			runtime.UnlockOSThread()
		}
		return nil, err
	}
	cmd := newCmd()
	startErr := cmd.Start()
	if err := move(back); err != nil {
		// The thread stays locked and dies with this goroutine. A child's
		// parent-death signal fires when that thread exits, so the child
		// cannot be kept either.
		if startErr == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		return nil, err
	}
	runtime.UnlockOSThread()
	if startErr != nil {
		return nil, startErr
	}
	return cmd, nil
}

// threadCgroupsV1 returns the calling thread's v1 cgroup per controller.
func threadCgroupsV1() (map[string]string, error) {
	b, err := os.ReadFile("/proc/thread-self/cgroup")
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		for _, ctrl := range strings.Split(f[1], ",") {
			out[ctrl] = f[2]
		}
	}
	for _, sub := range v1Subsystems {
		if _, ok := out[sub]; !ok {
			return nil, fmt.Errorf("no v1 %s cgroup in /proc/thread-self/cgroup", sub)
		}
	}
	return out, nil
}

func (c *cgroupV1) update(res *specs.LinuxResources) error {
	if res == nil {
		return nil
	}
	return c.cg.Update(res)
}

func (c *cgroupV1) stats() CgroupStats {
	var s CgroupStats
	s.MemoryPeakBytes = readUintFile(c.path("memory", "memory.max_usage_in_bytes"))
	s.OOMKills = readKeyedFile(c.path("memory", "memory.oom_control"), "oom_kill")
	s.CPUTime = time.Duration(readUintFile(c.path("cpuacct", "cpuacct.usage")))
	s.PidsPeak = readUintFile(c.path("pids", "pids.peak"))
	s.PidsLimitHits = readKeyedFile(c.path("pids", "pids.events"), "max")
	return s
}

func (c *cgroupV1) killAll() {
	killProcsFile(c.path("pids", "cgroup.procs"))
}

// remove rmdirs the cgroup in each hierarchy. (cgroup1's Delete walks
// every file of every hierarchy first; that was a sixth of the spawner's
// CPU time per sandbox. The kernel refuses to remove a non-empty cgroup
// anyway.)
func (c *cgroupV1) remove() error {
	var errs []error
	for _, sub := range v1Subsystems {
		if err := removeCgroupDir(filepath.Join(cgroupRoot, sub, c.group)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// newCgroupV2 creates group under the v2 hierarchy mounted at mountpoint.
func newCgroupV2(mountpoint, group string, res *specs.LinuxResources) (*cgroupV2, error) {
	m, err := cgroup2.NewManager(mountpoint, group, cgroup2.ToResources(res))
	if err != nil {
		return nil, fmt.Errorf("create cgroup %s: %w", group, err)
	}
	// Always enable the controllers whose figures we report (where the
	// hierarchy has them).
	_ = m.ToggleControllers([]string{"memory", "pids", "cpu"}, cgroup2.Enable)
	return &cgroupV2{m: m, path: filepath.Join(mountpoint, group)}, nil
}

type cgroupV2 struct {
	m    *cgroup2.Manager
	path string
}

// start forks cmd straight into the cgroup with clone3(CLONE_INTO_CGROUP),
// or, on kernels without it, starts it and migrates it; the init runs no
// command before the spawner has sent its config, which comes later.
// (Not exercised by the tests: their host keeps its controllers in v1.)
func (c *cgroupV2) start(newCmd func() *exec.Cmd) (*exec.Cmd, error) {
	fd, err := unix.Open(c.path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open cgroup: %w", err)
	}
	defer unix.Close(fd)
	cmd := newCmd()
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, fd
	if err := cmd.Start(); err == nil {
		return cmd, nil
	}
	cmd = newCmd()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	if err := c.m.AddProc(uint64(cmd.Process.Pid)); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("add init to cgroup: %w", err)
	}
	return cmd, nil
}

func (c *cgroupV2) update(res *specs.LinuxResources) error {
	if res == nil {
		return nil
	}
	return c.m.Update(cgroup2.ToResources(res))
}

func (c *cgroupV2) stats() CgroupStats {
	var s CgroupStats
	s.MemoryPeakBytes = readUintFile(filepath.Join(c.path, "memory.peak"))
	s.OOMKills = readKeyedFile(filepath.Join(c.path, "memory.events"), "oom_kill")
	s.CPUTime = time.Duration(readKeyedFile(filepath.Join(c.path, "cpu.stat"), "usage_usec")) * time.Microsecond
	s.PidsPeak = readUintFile(filepath.Join(c.path, "pids.peak"))
	s.PidsLimitHits = readKeyedFile(filepath.Join(c.path, "pids.events"), "max")
	return s
}

func (c *cgroupV2) killAll() {
	if err := os.WriteFile(filepath.Join(c.path, "cgroup.kill"), []byte("1"), 0); err != nil {
		killProcsFile(filepath.Join(c.path, "cgroup.procs"))
	}
}

func (c *cgroupV2) remove() error { return c.m.Delete() }

// cleanStaleCgroups removes the sandbox cgroups under parent whose spawner
// (the pid before the dash in the name) is gone: leftovers of a runner that
// crashed. Processes still in them are killed first.
func cleanStaleCgroups(parent string) error {
	var dirs []string // parent directories to scan
	if cgroups.Mode() == cgroups.Unified {
		dirs = []string{filepath.Join(cgroupRoot, parent)}
	} else {
		for _, sub := range v1Subsystems {
			dirs = append(dirs, filepath.Join(cgroupRoot, sub, parent))
		}
	}
	var errs []error
	for _, d := range dirs {
		ents, err := os.ReadDir(d)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		for _, e := range ents {
			if !e.IsDir() || !staleName(e.Name()) {
				continue
			}
			p := filepath.Join(d, e.Name())
			if err := removeCgroupDir(p); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// removeCgroupParent removes parent's directories if they are empty (other
// launchers may still use them; then it is left alone).
func removeCgroupParent(parent string) {
	if cgroups.Mode() == cgroups.Unified {
		_ = os.Remove(filepath.Join(cgroupRoot, parent))
		return
	}
	for _, sub := range v1Subsystems {
		_ = os.Remove(filepath.Join(cgroupRoot, sub, parent))
	}
}

// staleName reports whether a sandbox cgroup name "<spawner pid>-<seq>"
// belongs to a spawner that no longer runs.
func staleName(name string) bool {
	pidStr, _, ok := strings.Cut(name, "-")
	if !ok {
		return false
	}
	pid, err := strconv.Atoi(pidStr)
	if err != nil || pid <= 0 {
		return false
	}
	return !isSpawner(pid)
}

// isSpawner reports whether pid is a live sandbox spawner.
func isSpawner(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	arg0, _, _ := strings.Cut(string(b), "\x00")
	return arg0 == spawnerArg0
}

// removeCgroupDir removes a cgroup directory, killing what is left in it
// and polling until the killed processes are gone.
func removeCgroupDir(p string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := os.Remove(p)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("remove cgroup %s: %w", p, err)
		}
		killProcsFile(filepath.Join(p, "cgroup.procs"))
		time.Sleep(5 * time.Millisecond) // poll: the kernel empties the cgroup asynchronously
	}
}

func killProcsFile(procs string) {
	b, err := os.ReadFile(procs)
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func readUintFile(p string) uint64 {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0
	}
	v, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return v
}

// readKeyedFile reads the value of key from a "key value" per line file.
func readKeyedFile(p, key string) uint64 {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if ok && k == key {
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}
