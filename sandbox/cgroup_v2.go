package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

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

// start has launch clone the process straight into the cgroup
// (clone3's CLONE_INTO_CGROUP), or, on kernels without it, start it and
// migrate it; the init runs no command before the spawner has sent its
// config, which comes later. (Not exercised by the tests: their host
// keeps its controllers in v1.)
func (c *cgroupV2) start(launch func(cgroupFD int) (int, error)) (int, error) {
	fd, err := unix.Open(c.path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("open cgroup: %w", err)
	}
	defer unix.Close(fd)
	if pid, err := launch(fd); err == nil {
		return pid, nil
	}
	pid, err := launch(-1)
	if err != nil {
		return 0, err
	}
	if err := c.m.AddProc(uint64(pid)); err != nil {
		killAndReap(pid)
		return 0, fmt.Errorf("add init to cgroup: %w", err)
	}
	return pid, nil
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

// killAll kills every process in the cgroup with cgroup.kill (Linux 5.14),
// which no fork can escape; on older kernels it freezes the cgroup, kills
// what it lists and thaws it.
func (c *cgroupV2) killAll() {
	if err := os.WriteFile(filepath.Join(c.path, "cgroup.kill"), []byte("1"), 0); err == nil {
		return
	}
	freeze := filepath.Join(c.path, "cgroup.freeze")
	frozen := os.WriteFile(freeze, []byte("1"), 0) == nil
	for deadline := time.Now().Add(freezeWait); frozen && time.Now().Before(deadline); {
		if readKeyedFile(filepath.Join(c.path, "cgroup.events"), "frozen") == 1 {
			break
		}
		time.Sleep(time.Millisecond) // poll: tasks freeze as they reach a safe point
	}
	killProcsFile(filepath.Join(c.path, "cgroup.procs"))
	if frozen {
		_ = os.WriteFile(freeze, []byte("0"), 0)
	}
}

func (c *cgroupV2) signalAll(sig syscall.Signal, except int) {
	b, _ := os.ReadFile(filepath.Join(c.path, "cgroup.procs"))
	signalPids(b, sig, except)
}

func (c *cgroupV2) remove() error { return c.m.Delete() }

// reset refuses reuse: v2's memory.peak cannot be reset for a new reader on
// the kernels this runs on, so each sandbox gets a fresh cgroup.
func (c *cgroupV2) reset() bool { return false }
