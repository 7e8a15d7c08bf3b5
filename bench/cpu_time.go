package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of the CPU times in /proc/stat and /proc/PID/stat
// (USER_HZ, what sysconf(_SC_CLK_TCK) returns): 100 per second on every
// architecture Go runs Linux on, whatever the kernel's internal HZ. One
// tick is therefore 10 ms: figures summed over a run of hundreds of
// operations are exact enough, a single short operation is not.
const userHZ = 100

// CPUTime is CPU time split into user and system time.
type CPUTime struct {
	User, System time.Duration
}

// Total is user plus system time.
func (c CPUTime) Total() time.Duration { return c.User + c.System }

// Sub returns c minus o, the CPU used between two readings.
func (c CPUTime) Sub(o CPUTime) CPUTime {
	return CPUTime{User: c.User - o.User, System: c.System - o.System}
}

// Add returns c plus o.
func (c CPUTime) Add(o CPUTime) CPUTime {
	return CPUTime{User: c.User + o.User, System: c.System + o.System}
}

// Sum adds up a split by process (ProcessTreeCPUByProcess): the whole
// tree's time.
func Sum(byProcess map[string]CPUTime) CPUTime {
	var t CPUTime
	for _, c := range byProcess {
		t = t.Add(c)
	}
	return t
}

func ticks(user, system uint64) CPUTime {
	return CPUTime{User: time.Duration(user) * time.Second / userHZ, System: time.Duration(system) * time.Second / userHZ}
}

// MachineCPU reads the CPU time all of the machine's cores have spent
// since boot, from the "cpu" line of /proc/stat: user is user+nice, system
// is system+irq+softirq. Idle, iowait and steal time are not counted
// (guest time is already part of user). Every process counts, whoever runs
// it: on a shared machine the figure includes other people's work.
func MachineCPU() (CPUTime, error) {
	c, _, err := MachineCPUAndSteal()
	return c, err
}

// MachineCPUAndSteal is MachineCPU, and from the same reading the time
// the machine's virtual CPUs have waited since boot for the hypervisor
// while they had work to run (the steal column of /proc/stat's cpu line;
// 0 on bare metal, or on a kernel without it). No CPU figure here counts
// steal, the machine's or a process's: it is the host's other guests, and
// a busy host also makes every other figure larger (their caches and
// memory are shared with ours).
func MachineCPUAndSteal() (CPUTime, time.Duration, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return CPUTime{}, 0, err
	}
	v, err := procStatCPU(data)
	if err != nil {
		return CPUTime{}, 0, err
	}
	return cpuOf(v), time.Duration(v[7]) * time.Second / userHZ, nil
}

// cpuOf is MachineCPU's figure from the cpu line's numbers.
func cpuOf(v [8]uint64) CPUTime {
	user, nice, system, irq, softirq := v[0], v[1], v[2], v[5], v[6]
	return ticks(user+nice, system+irq+softirq)
}

// procStatCPU returns the numbers of /proc/stat's cpu line (the whole
// machine's): user nice system idle iowait irq softirq steal, the steal 0
// where an old kernel leaves it out.
func procStatCPU(data []byte) ([8]uint64, error) {
	var v [8]uint64
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "cpu" {
			continue
		}
		// cpu user nice system idle iowait irq softirq [steal guest guest_nice]
		if len(f) < 8 {
			return v, fmt.Errorf("/proc/stat: short cpu line %q", sc.Text())
		}
		for i := range min(len(v), len(f)-1) {
			n, err := strconv.ParseUint(f[i+1], 10, 64)
			if err != nil {
				return v, fmt.Errorf("/proc/stat: cpu line %q: %w", sc.Text(), err)
			}
			v[i] = n
		}
		return v, nil
	}
	return v, errors.New("/proc/stat: no cpu line")
}

// procStat is what ProcessTreeCPU needs from one /proc/PID/stat.
type procStat struct {
	ppid int
	// user is utime+cutime, system stime+cstime, in ticks: the process's
	// own time (all its threads) and that of the children it has reaped,
	// which includes what those children had reaped in turn.
	user, system uint64
	// reapedUser and reapedSystem are the reaped children's part (cutime,
	// cstime).
	reapedUser, reapedSystem uint64
	// name labels the process in a split by process (processName); empty
	// from parsePIDStat.
	name string
}

// parsePIDStat parses the text of /proc/PID/stat. The command name (field
// 2) is in parentheses and may itself contain spaces and parentheses, so
// the fields are counted from the last ')'.
func parsePIDStat(data []byte) (procStat, error) {
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("stat %q: no command name", s)
	}
	// After ')': state(3) ppid(4) pgrp session tty_nr tpgid flags minflt
	// cminflt majflt cmajflt utime(14) stime(15) cutime(16) cstime(17) …
	f := strings.Fields(s[i+1:])
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("stat %q: %d fields after the command name, want at least 15", s, len(f))
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return procStat{}, fmt.Errorf("stat %q: ppid: %w", s, err)
	}
	var v [4]uint64
	for k := range v {
		// cutime and cstime are signed in the kernel's format, never
		// negative in practice.
		n, err := strconv.ParseInt(f[11+k], 10, 64)
		if err != nil || n < 0 {
			return procStat{}, fmt.Errorf("stat %q: field %d is not a tick count", s, 14+k)
		}
		v[k] = uint64(n)
	}
	return procStat{ppid: ppid, user: v[0] + v[2], system: v[1] + v[3], reapedUser: v[2], reapedSystem: v[3]}, nil
}

// treeCPU sums the CPU time of root and of every descendant in procs (by
// pid); ok is false if root is not in procs.
func treeCPU(procs map[int]procStat, root int) (c CPUTime, ok bool) {
	members, ok := treeMembers(procs, root)
	var user, system uint64
	for _, pid := range members {
		user += procs[pid].user
		system += procs[pid].system
	}
	return ticks(user, system), ok
}

// treeMembers lists root and its descendants in procs; ok is false if root
// is not in procs.
func treeMembers(procs map[int]procStat, root int) (members []int, ok bool) {
	if _, ok := procs[root]; !ok {
		return nil, false
	}
	children := map[int][]int{}
	for pid, p := range procs {
		if pid != root {
			children[p.ppid] = append(children[p.ppid], pid)
		}
	}
	for todo := []int{root}; len(todo) > 0; {
		pid := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		members = append(members, pid)
		todo = append(todo, children[pid]...)
	}
	return members, true
}

// treeCPUByProcess splits treeCPU by process name: each live process's own
// time under its name, and the time of the children it reaped under
// "NAME (reaped children)" (for the sandbox spawner: every sandbox).
func treeCPUByProcess(procs map[int]procStat, root int) (map[string]CPUTime, bool) {
	members, ok := treeMembers(procs, root)
	out := map[string]CPUTime{}
	add := func(name string, user, system uint64) {
		out[name] = out[name].Add(ticks(user, system))
	}
	for _, pid := range members {
		p := procs[pid]
		add(p.name, p.user-p.reapedUser, p.system-p.reapedSystem)
		if p.reapedUser+p.reapedSystem > 0 {
			add(p.name+" (reaped children)", p.reapedUser, p.reapedSystem)
		}
	}
	return out, ok
}

// processName labels a process by its command line: argv[0]'s base name,
// and for paddock its subcommand ("paddock up", "paddock-sandbox-spawner").
func processName(cmdline []byte) string {
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if len(args) == 0 || args[0] == "" {
		return "?"
	}
	name := filepath.Base(args[0])
	if name == "paddock" && len(args) > 1 {
		name += " " + args[1]
	}
	return name
}

// ProcessTreeCPU reads the CPU time of the live process tree rooted at pid:
// the sum over pid and its live descendants of utime+stime+cutime+cstime
// from /proc/PID/stat. A child that has exited is counted once its parent
// reaps it (in the parent's cutime and cstime) or, before that, as a
// zombie; so the difference of two readings is the CPU the tree used in
// between, including processes that started and ended in between, as long
// as a member of the tree reaped them. For `paddock up` that is every
// sandbox: inits are reaped by the spawner, a child of the runner, a child
// of `paddock up`. The /proc scan is not atomic: a process reaped during
// it may be missed or counted twice, an error of one process's CPU.
func ProcessTreeCPU(pid int) (CPUTime, error) {
	procs, err := readProcs(false)
	if err != nil {
		return CPUTime{}, err
	}
	c, ok := treeCPU(procs, pid)
	if !ok {
		return CPUTime{}, fmt.Errorf("process %d: no such process", pid)
	}
	return c, nil
}

// ProcessTreeCPUByProcess is ProcessTreeCPU split by process (see
// treeCPUByProcess).
func ProcessTreeCPUByProcess(pid int) (map[string]CPUTime, error) {
	procs, err := readProcs(true)
	if err != nil {
		return nil, err
	}
	c, ok := treeCPUByProcess(procs, pid)
	if !ok {
		return nil, fmt.Errorf("process %d: no such process", pid)
	}
	return c, nil
}

// readProcs reads every process's stat (and, with names, its command
// line).
func readProcs(names bool) (map[int]procStat, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	procs := map[int]procStat{}
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // the process exited since the listing
		}
		p, err := parsePIDStat(data)
		if err != nil {
			return nil, err
		}
		if names {
			cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			p.name = processName(cmdline)
		}
		procs[n] = p
	}
	return procs, nil
}

// CPUPerOp is CPU time per completed operation, in milliseconds.
type CPUPerOp struct {
	UserMs   float64 `json:"user_ms"`
	SystemMs float64 `json:"system_ms"`
}

// TotalMs is user plus system time.
func (c CPUPerOp) TotalMs() float64 { return c.UserMs + c.SystemMs }

func perOp(c CPUTime, ops int) *CPUPerOp {
	ms := func(d time.Duration) float64 { return d.Seconds() * 1000 / float64(ops) }
	return &CPUPerOp{UserMs: ms(c.User), SystemMs: ms(c.System)}
}

// cpuMeter measures the CPU used over one scenario's run: the machine's
// and, if farmPID is set, the farm's process tree. A reading that fails
// (no /proc, the farm gone) leaves that figure out of the report.
type cpuMeter struct {
	farmPID           int
	machine, farm     CPUTime
	machineOK, farmOK bool
	farmByProcess     map[string]CPUTime
}

func startCPUMeter(farmPID int) *cpuMeter {
	m := &cpuMeter{farmPID: farmPID}
	var err error
	m.machine, err = MachineCPU()
	m.machineOK = err == nil
	if farmPID > 0 {
		m.farmByProcess, err = ProcessTreeCPUByProcess(farmPID)
		m.farmOK = err == nil
		m.farm = Sum(m.farmByProcess)
	}
	return m
}

// perOp returns the CPU used since the meter started, per operation, for
// the machine, the farm, and the farm split by process; nil figures for
// readings that failed or when ops is 0.
func (m *cpuMeter) perOp(ops int) (machine, farm *CPUPerOp, byProcess map[string]*CPUPerOp) {
	if ops <= 0 {
		return nil, nil, nil
	}
	if c, err := MachineCPU(); err == nil && m.machineOK {
		machine = perOp(c.Sub(m.machine), ops)
	}
	if m.farmOK {
		if now, err := ProcessTreeCPUByProcess(m.farmPID); err == nil {
			byProcess = map[string]*CPUPerOp{}
			for name, c := range now {
				byProcess[name] = perOp(c.Sub(m.farmByProcess[name]), ops)
			}
			farm = perOp(Sum(now).Sub(m.farm), ops)
		}
	}
	return machine, farm, byProcess
}
