package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// cgroupV1 is a sandbox cgroup on a v1 (legacy or hybrid) host: one
// directory of the same name in each of v1Subsystems' hierarchies. It is
// written directly (a handful of files) rather than through
// containerd/cgroups, whose generic create, update and delete touch every
// file of every hierarchy; and it is reused by the spawner's pool, so
// that a sandbox costs no mkdir or rmdir (and the kernel no memcg to
// allocate, offline and free).
type cgroupV1 struct {
	group string
	dirs  map[string]string // per subsystem, the cgroup's directory
	home  *cgroupHomeV1     // where the spawner's threads live
	files cgroupFiles
	// applied is what update last wrote to each file (relative to the
	// hierarchies' root), so that it writes only what changes.
	applied map[string]string
	// used: the cgroup has held a sandbox before; pids.peak, which v1
	// cannot reset, covers those too.
	used bool
	// Counters that cannot be reset, as they were at the last reset.
	baseOOMKills, basePidsLimitHits uint64
}

// cgroupHomeV1 is the v1 cgroup of the spawner's threads, which a thread
// returns to after forking an init into a sandbox cgroup. Its files are
// shared by every cgroupV1 of a spawner.
type cgroupHomeV1 struct {
	once  sync.Once
	paths map[string]string // per subsystem, the home "tasks" file
	err   error
	files cgroupFiles
}

// tasks returns the path of the home "tasks" file of sub.
func (h *cgroupHomeV1) tasks(sub string) (string, error) {
	h.once.Do(func() {
		var groups map[string]string
		if groups, h.err = threadCgroupsV1(); h.err == nil {
			h.paths = map[string]string{}
			for sub, g := range groups {
				h.paths[sub] = filepath.Join(cgroupRoot, sub, g, "tasks")
			}
		}
	})
	if h.err != nil {
		return "", h.err
	}
	return h.paths[sub], nil
}

// newCgroupV1 creates group in every hierarchy, with the limits of res.
func newCgroupV1(group string, res *specs.LinuxResources, home *cgroupHomeV1) (*cgroupV1, error) {
	c := &cgroupV1{group: group, dirs: map[string]string{}, home: home, applied: map[string]string{}}
	for _, sub := range v1Subsystems {
		c.dirs[sub] = filepath.Join(cgroupRoot, sub, group)
	}
	for _, sub := range v1Subsystems {
		// cpu and cpuacct may be one hierarchy under two names.
		if err := os.MkdirAll(c.dirs[sub], 0o755); err != nil {
			_ = c.remove()
			return nil, fmt.Errorf("create cgroup %s: %w", group, err)
		}
	}
	if err := c.update(res); err != nil {
		_ = c.remove()
		return nil, err
	}
	return c, nil
}

// path is a control file's path (built once per directory: it is taken
// a dozen times per sandbox).
func (c *cgroupV1) path(sub, file string) string {
	if dir, ok := c.dirs[sub]; ok {
		return dir + "/" + file
	}
	return filepath.Join(cgroupRoot, sub, c.group, file)
}

// start moves the calling OS thread (only it: migrating oneself through the
// "tasks" file skips the global lock that migrating a process needs) into
// the cgroup, has launch start the process from it, and moves the thread
// back.
func (c *cgroupV1) start(launch func(cgroupFD int) (int, error)) (int, error) {
	runtime.LockOSThread()
	toSandbox := func() error {
		for _, sub := range v1Subsystems {
			if err := c.files.write(c.path(sub, "tasks"), "0"); err != nil {
				return fmt.Errorf("move thread to %s cgroup: %w", sub, err)
			}
		}
		return nil
	}
	back := func() error {
		for _, sub := range v1Subsystems {
			p, err := c.home.tasks(sub)
			if err == nil {
				err = c.home.files.write(p, "0")
			}
			if err != nil {
				return fmt.Errorf("move thread back to its %s cgroup: %w", sub, err)
			}
		}
		return nil
	}
	if _, err := c.home.tasks(v1Subsystems[0]); err != nil {
		runtime.UnlockOSThread()
		return 0, err
	}
	if err := toSandbox(); err != nil {
		if back() == nil {
			runtime.UnlockOSThread()
		}
		return 0, err
	}
	pid, startErr := launch(-1)
	if err := back(); err != nil {
		// The thread stays locked and dies with this goroutine. A child's
		// parent-death signal fires when that thread exits, so the child
		// cannot be kept either.
		if startErr == nil {
			killAndReap(pid)
		}
		return 0, err
	}
	runtime.UnlockOSThread()
	if startErr != nil {
		return 0, startErr
	}
	return pid, nil
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

// update applies res and clears every limit res does not set, so that a
// reused cgroup carries nothing over from its last sandbox.
func (c *cgroupV1) update(res *specs.LinuxResources) error {
	var mem specs.LinuxMemory
	var cpu specs.LinuxCPU
	pids := "max"
	if res != nil {
		if res.Memory != nil {
			mem = *res.Memory
		}
		if res.CPU != nil {
			cpu = *res.CPU
		}
		if res.Pids != nil && res.Pids.Limit != nil && *res.Pids.Limit > 0 {
			pids = strconv.FormatInt(*res.Pids.Limit, 10)
		}
	}
	limit, memsw := intOr(mem.Limit, -1), intOr(mem.Swap, -1)
	quota, period := intOr(cpu.Quota, -1), uintOr(cpu.Period, 100000)
	shares := uintOr(cpu.Shares, 1024)
	type write struct{ file, value string }
	var writes []write
	// memsw (memory+swap) may never be below the memory limit: lift it
	// before the memory limit changes, set it last. Likewise the CPU
	// quota around a change of period.
	if c.applied["memory/memory.limit_in_bytes"] != limit || c.applied["memory/memory.memsw.limit_in_bytes"] != memsw {
		writes = append(writes, write{"memory/memory.memsw.limit_in_bytes", "-1"},
			write{"memory/memory.limit_in_bytes", limit}, write{"memory/memory.memsw.limit_in_bytes", memsw})
	}
	if c.applied["cpu/cpu.cfs_period_us"] != period {
		writes = append(writes, write{"cpu/cpu.cfs_quota_us", "-1"}, write{"cpu/cpu.cfs_period_us", period})
	}
	writes = append(writes, write{"cpu/cpu.cfs_quota_us", quota}, write{"cpu/cpu.shares", shares},
		write{"memory/memory.soft_limit_in_bytes", intOr(mem.Reservation, -1)}, write{"pids/pids.max", pids},
		write{"memory/memory.kmem.tcp.limit_in_bytes", tcpLimitV1(mem.Limit)})
	for _, w := range writes {
		if c.applied[w.file] == w.value {
			continue
		}
		sub, file, _ := strings.Cut(w.file, "/")
		err := c.files.write(c.path(sub, file), w.value)
		if err != nil && (strings.Contains(file, "memsw") || strings.Contains(file, "kmem")) && errors.Is(err, os.ErrNotExist) {
			err = nil // no swap (or kernel memory) accounting on this kernel
		}
		if err != nil {
			delete(c.applied, w.file)
			return fmt.Errorf("set cgroup %s: %w", w.file, err)
		}
		c.applied[w.file] = w.value
	}
	return nil
}

// maxSandboxTCP caps a v1 sandbox's socket buffers (tcpLimitV1).
const maxSandboxTCP = 256 << 20

// tcpLimitV1 is a sandbox's memory.kmem.tcp.limit_in_bytes. v1 charges
// socket buffers only to a cgroup whose kmem.tcp limit has been written
// (any value, -1 included): otherwise they are charged to no cgroup at
// all, and one action queueing unread data on loopback connections took
// 568 MiB of the host-wide net.ipv4.tcp_mem, which the farm's own gRPC
// connections share. Despite its name the counter takes every socket's
// buffers once it is on, UDP's included (udp_mem is otherwise just as
// open). The limit is the memory limit, as on v2 (where
// socket memory counts in memory.current), but capped at maxSandboxTCP:
// v1 counts these buffers apart from memory.limit_in_bytes, so they add
// to it, and a sandbox with a large memory limit must still not be able
// to take a large share of tcp_mem (2.2 GiB on an 8 GiB host).
func tcpLimitV1(memLimit *int64) string {
	if memLimit == nil || *memLimit <= 0 || *memLimit > maxSandboxTCP {
		return strconv.Itoa(maxSandboxTCP)
	}
	return strconv.FormatInt(*memLimit, 10)
}

func intOr(v *int64, def int64) string {
	if v == nil {
		return strconv.FormatInt(def, 10)
	}
	return strconv.FormatInt(*v, 10)
}

func uintOr(v *uint64, def uint64) string {
	if v == nil || *v == 0 {
		return strconv.FormatUint(def, 10)
	}
	return strconv.FormatUint(*v, 10)
}

// stats reads the figures since the last reset (or creation).
func (c *cgroupV1) stats() CgroupStats {
	var s CgroupStats
	s.MemoryPeakBytes = parseUint(c.read("memory", "memory.max_usage_in_bytes"))
	s.OOMKills = parseKeyed(c.read("memory", "memory.oom_control"), "oom_kill") - c.baseOOMKills
	s.CPUTime = time.Duration(parseUint(c.read("cpuacct", "cpuacct.usage")))
	if !c.used {
		s.PidsPeak = parseUint(c.read("pids", "pids.peak"))
	}
	s.PidsLimitHits = parseKeyed(c.read("pids", "pids.events"), "max") - c.basePidsLimitHits
	return s
}

// read returns a control file's content, or nothing if it cannot be read.
func (c *cgroupV1) read(sub, file string) []byte {
	b, _ := c.files.read(c.path(sub, file))
	return b
}

// maxReusedCharge is the most memory a cgroup may still have charged to
// it (page cache its last sandbox read or wrote) and be reused. v1 keeps
// those charges with the cgroup: a sandbox that read 5 GB of files left
// them charged, and the next one in the cgroup, perhaps another
// tenant's, reported a peak of 4 GB for `echo hi`, past its own 64 MiB
// limit, and waited 0.9 s for the kernel to reclaim the first one's pages
// under that limit. Emptying the cgroup (memory.force_empty) would drop
// the pages from the page cache, which the next actions' tools and
// inputs are read from; a cgroup removed instead hands its charges to
// its parent and keeps them cached.
const maxReusedCharge = 16 << 20

// reset readies the cgroup for another sandbox once its last one is gone:
// no process may be left, at most maxReusedCharge may still be charged to
// it, and the figures start again from zero (the memory peak from the
// current usage, which includes what is still charged).
func (c *cgroupV1) reset() bool {
	if procs, err := c.procs(); err != nil || len(strings.TrimSpace(string(procs))) != 0 {
		return false
	}
	// Socket buffers are charged apart (memory.kmem.tcp, see tcpLimitV1)
	// and stay charged while a socket outlives its processes (orphaned,
	// still sending): they would count against the next sandbox's limit.
	if parseUint(c.read("memory", "memory.usage_in_bytes"))+
		parseUint(c.read("memory", "memory.kmem.tcp.usage_in_bytes")) > maxReusedCharge {
		return false
	}
	if slices.Contains(v1Subsystems, "freezer") {
		if b, err := c.files.read(c.path("freezer", "freezer.state")); err != nil || strings.TrimSpace(string(b)) != "THAWED" {
			return false
		}
	}
	for _, f := range [][2]string{{"memory", "memory.max_usage_in_bytes"}, {"cpuacct", "cpuacct.usage"}} {
		if err := c.files.write(c.path(f[0], f[1]), "0"); err != nil {
			return false
		}
	}
	c.baseOOMKills = parseKeyed(c.read("memory", "memory.oom_control"), "oom_kill")
	c.basePidsLimitHits = parseKeyed(c.read("pids", "pids.events"), "max")
	c.used = true
	return true
}

// killAll SIGKILLs every process in the cgroup. Where the freezer is
// mounted, it freezes the cgroup first, so that no process forks between
// the reading of the list and the kill (a fork bomb at its pids limit
// otherwise refills what is killed, and starves the host meanwhile), and
// thaws it after, which lets the killed processes die.
func (c *cgroupV1) killAll() {
	frozen := c.freeze()
	c.signalAll(syscall.SIGKILL, 0)
	if frozen {
		_ = c.files.write(c.path("freezer", "freezer.state"), "THAWED")
	}
}

// freeze freezes the cgroup and waits (at most freezeWait) until it is
// frozen; it reports whether it has to be thawed.
func (c *cgroupV1) freeze() bool {
	if !slices.Contains(v1Subsystems, "freezer") {
		return false
	}
	state := c.path("freezer", "freezer.state")
	if err := c.files.write(state, "FROZEN"); err != nil {
		return false
	}
	for deadline := time.Now().Add(freezeWait); time.Now().Before(deadline); {
		if b, err := c.files.read(state); err != nil || strings.TrimSpace(string(b)) == "FROZEN" {
			break
		}
		time.Sleep(time.Millisecond) // poll: the kernel freezes tasks as they reach a safe point
	}
	return true
}

func (c *cgroupV1) signalAll(sig syscall.Signal, except int) {
	procs, _ := c.procs()
	signalPids(procs, sig, except)
}

// procs lists the cgroup's processes. It opens cgroup.procs afresh each
// time, unlike the other control files (cgroupFiles): on v1 the kernel
// keeps the list it made for an open file and serves it again to later
// reads of that file, until a second has passed without one, so a kept
// descriptor would see a stale list (an empty one, read at reset, would
// hide every process of the next sandbox from a kill).
func (c *cgroupV1) procs() ([]byte, error) {
	return os.ReadFile(c.path("pids", "cgroup.procs"))
}

// remove rmdirs the cgroup in each hierarchy. (cgroup1's Delete walks
// every file of every hierarchy first; that was a sixth of the spawner's
// CPU time per sandbox. The kernel refuses to remove a non-empty cgroup
// anyway.)
func (c *cgroupV1) remove() error {
	c.files.close()
	var errs []error
	for _, sub := range v1Subsystems {
		if err := removeCgroupDir(filepath.Join(cgroupRoot, sub, c.group)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
