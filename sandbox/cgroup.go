package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/cgroups/v3"
	specs "github.com/opencontainers/runtime-spec/specs-go"
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
	// start has launch start a process, from the calling OS thread, so
	// that it is born inside the cgroup: nothing it does runs outside,
	// and no process has to be migrated (on v1 that costs an RCU grace
	// period, several milliseconds). launch gets a descriptor of the
	// cgroup to clone into (clone3's CLONE_INTO_CGROUP), or -1 when the
	// calling thread's own cgroup is the one; it returns the pid.
	start(launch func(cgroupFD int) (int, error)) (int, error)
	// update applies the limits of res, and clears those res does not
	// set (a cgroup waits without limits for its sandbox, and may have
	// held another before).
	update(res *specs.LinuxResources) error
	// stats reads the figures since the cgroup was created or reset.
	stats() CgroupStats
	// killAll SIGKILLs every process left in the cgroup.
	killAll()
	// signalAll sends sig to every process in the cgroup but except.
	signalAll(sig syscall.Signal, except int)
	// reset readies the cgroup for the next sandbox once the last one's
	// processes are gone, and reports whether it may be reused.
	reset() bool
	// remove deletes the cgroup, which must be empty.
	remove() error
}

// cgroupRoot is where the hierarchies are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// v1Subsystems are the v1 controllers a sandbox uses: memory, pids, cpu
// and cpuacct, and the freezer where the host has it mounted (killAll
// freezes a sandbox before it kills it, so that a fork bomb cannot outrun
// the kill). A fact of the host, read once; constant afterwards.
var v1Subsystems = v1SubsystemsOf(cgroupRoot)

// v1SubsystemsOf lists the v1 controllers to use under root.
func v1SubsystemsOf(root string) []string {
	subs := []string{"memory", "pids", "cpu", "cpuacct"}
	if _, err := os.Stat(filepath.Join(root, "freezer", "cgroup.procs")); err == nil {
		subs = append(subs, "freezer")
	}
	return subs
}

// checkCgroups makes sure the sandboxes' cgroups can be made under parent
// in every hierarchy they use, creating parent there. Without it a runner
// with no cgroup file system (started under `ip netns exec`, which mounts
// a /sys of its own) served as ready and failed every action INTERNAL.
func checkCgroups(parent string) error {
	if cgroups.Mode() == cgroups.Unified {
		return checkCgroupsAt(cgroupRoot, parent, []string{""})
	}
	return checkCgroupsAt(cgroupRoot, parent, v1Subsystems)
}

// checkCgroupsAt is checkCgroups for the hierarchies subs ("" for v2's
// one) under root.
func checkCgroupsAt(root, parent string, subs []string) error {
	for _, sub := range subs {
		top := filepath.Join(root, sub)
		if _, err := os.Stat(filepath.Join(top, "cgroup.procs")); err != nil {
			return fmt.Errorf("no cgroup hierarchy at %s (%v): the runner needs the host's cgroup file system mounted at %s (under `ip netns exec`, which mounts a /sys of its own, start it with `nsenter --net=/run/netns/NAME` instead)", top, err, root)
		}
		if err := os.MkdirAll(filepath.Join(top, parent), 0o755); err != nil {
			return fmt.Errorf("create the sandboxes' cgroup parent: %w", err)
		}
	}
	return nil
}

// freezeWait bounds how long killAll waits for a sandbox to freeze (a
// process in uninterruptible sleep delays it); past it, the kill goes
// ahead unfrozen.
const freezeWait = time.Second

// newSandboxCgroup creates parent/name with the limits of res, using v2 when
// the host is unified and v1 otherwise (hybrid hosts keep their controllers
// in v1).
func newSandboxCgroup(parent, name string, res *specs.LinuxResources, home *cgroupHomeV1) (sandboxCgroup, error) {
	if res == nil {
		res = &specs.LinuxResources{}
	}
	group := "/" + parent + "/" + name
	if cgroups.Mode() == cgroups.Unified {
		return newCgroupV2(cgroupRoot, group, res)
	}
	return newCgroupV1(group, res, home)
}

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
	b, _ := os.ReadFile(procs)
	signalPids(b, syscall.SIGKILL, 0)
}

// signalPids sends sig to every pid listed in procs (a cgroup.procs file's
// content) but except.
func signalPids(procs []byte, sig syscall.Signal, except int) {
	for _, f := range strings.Fields(string(procs)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 0 && pid != except {
			_ = syscall.Kill(pid, sig)
		}
	}
}

func readUintFile(p string) uint64 {
	b, _ := os.ReadFile(p)
	return parseUint(b)
}

// readKeyedFile reads the value of key from a "key value" per line file.
func readKeyedFile(p, key string) uint64 {
	b, _ := os.ReadFile(p)
	return parseKeyed(b, key)
}

func parseUint(b []byte) uint64 {
	v, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return v
}

// parseKeyed returns the value of key in "key value" lines.
func parseKeyed(b []byte, key string) uint64 {
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if ok && k == key {
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}
