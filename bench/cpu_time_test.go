package bench

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       CPUTime
		wantErr    bool
	}{{
		name: "linux 6",
		// user nice system idle iowait irq softirq steal guest guest_nice
		text: "cpu  1000 20 300 99999 77 4 5 6 700 0\ncpu0 500 10 150 50000 40 2 3 3 350 0\nintr 12345\n",
		// user+nice, system+irq+softirq; guest is inside user already.
		want: CPUTime{User: 10200 * time.Millisecond, System: 3090 * time.Millisecond},
	}, {
		name: "old kernel without steal and guest",
		text: "cpu  1 2 3 4 5 6 7\n",
		want: CPUTime{User: 30 * time.Millisecond, System: 160 * time.Millisecond},
	}, {
		name: "the per-core lines are not the total", text: "cpu0 1 2 3 4 5 6 7\n", wantErr: true,
	}, {
		name: "short line", text: "cpu  1 2 3 4\n", wantErr: true,
	}, {
		name: "not a number", text: "cpu  1 2 x 4 5 6 7\n", wantErr: true,
	}} {
		t.Run(tc.name, func(t *testing.T) { checkParse(t, "procStatCPU", machineCPUOf, tc.text, tc.want, tc.wantErr) })
	}
}

// machineCPUOf is MachineCPU's figure from the text of /proc/stat.
func machineCPUOf(data []byte) (CPUTime, error) {
	v, err := procStatCPU(data)
	if err != nil {
		return CPUTime{}, err
	}
	return cpuOf(v), nil
}

// TestProcStatSteal: the steal column is the eighth number of the cpu
// line, 0 where an old kernel leaves it out.
func TestProcStatSteal(t *testing.T) {
	for text, want := range map[string]uint64{
		"cpu  1000 20 300 99999 77 4 5 6 700 0\ncpu0 500 10 150 50000 40 2 3 3 350 0\n": 6,
		"cpu  1 2 3 4 5 6 7\n": 0,
	} {
		v, err := procStatCPU([]byte(text))
		if err != nil || v[7] != want {
			t.Errorf("procStatCPU(%q): steal %d, %v; want %d", text, v[7], err, want)
		}
	}
	if _, _, err := MachineCPUAndSteal(); err != nil {
		t.Errorf("MachineCPUAndSteal on this machine: %v", err)
	}
}

func TestParsePIDStat(t *testing.T) {
	// Fields 14-17 are utime stime cutime cstime.
	const tail = " S 41 42 42 0 -1 4194560 900 0 0 0 11 22 33 44 20 0 3 0 1234 5678 90 18446744073709551615\n"
	for _, tc := range []struct {
		name, text string
		want       procStat
		wantErr    bool
	}{{
		name: "plain", text: "42 (paddock)" + tail,
		want: procStat{ppid: 41, user: 11 + 33, system: 22 + 44, reapedUser: 33, reapedSystem: 44},
	}, {
		name: "command name with spaces and parentheses", text: "42 (a) b (c) d)" + tail,
		want: procStat{ppid: 41, user: 44, system: 66, reapedUser: 33, reapedSystem: 44},
	}, {
		name: "zombie", text: "42 (sh) Z 41 42 42 0 -1 4194560 900 0 0 0 7 8 0 0 20 0 1 0 1234 0 0 0\n",
		want: procStat{ppid: 41, user: 7, system: 8},
	}, {
		name: "truncated", text: "42 (sh) S 41 42 42 0 -1 4194560 900 0 0 0 7 8", wantErr: true,
	}, {
		name: "no command name", text: "42 sh S 41", wantErr: true,
	}, {
		name: "bad tick count", text: "42 (sh) S 41 42 42 0 -1 4194560 900 0 0 0 7 x 0 0 20", wantErr: true,
	}} {
		t.Run(tc.name, func(t *testing.T) { checkParse(t, "parsePIDStat", parsePIDStat, tc.text, tc.want, tc.wantErr) })
	}
}

func TestTreeCPU(t *testing.T) {
	procs := map[int]procStat{
		1:  {ppid: 0, user: 1000, system: 1000}, // init: not in the tree
		10: {ppid: 1, user: 1, system: 2},       // paddock up
		11: {ppid: 10, user: 10, system: 20},    // runner, with reaped sandboxes in its c*time
		12: {ppid: 11, user: 100, system: 200},  // spawner
		13: {ppid: 12, user: 3, system: 4},      // a sandbox init, live or a zombie
		20: {ppid: 1, user: 500, system: 500},   // an unrelated process
		21: {ppid: 20, user: 500, system: 500},  // and its child
	}
	for _, tc := range []struct {
		root       int
		user, sys  uint64
		wantAbsent bool
	}{
		{root: 10, user: 1 + 10 + 100 + 3, sys: 2 + 20 + 200 + 4},
		{root: 12, user: 103, sys: 204},
		{root: 13, user: 3, sys: 4},
		{root: 99, wantAbsent: true},
	} {
		got, ok := treeCPU(procs, tc.root)
		if ok == tc.wantAbsent {
			t.Errorf("treeCPU(root %d): found %v, want %v", tc.root, ok, !tc.wantAbsent)
			continue
		}
		if want := ticks(tc.user, tc.sys); got != want {
			t.Errorf("treeCPU(root %d) = %+v, want %+v", tc.root, got, want)
		}
	}
}

func TestTreeCPUByProcess(t *testing.T) {
	procs := map[int]procStat{
		1:  {ppid: 0, user: 1000, system: 1000, name: "init"},
		10: {ppid: 1, user: 1, system: 2, name: "paddock up"},
		11: {ppid: 10, user: 10, system: 20, name: "paddock runner"},
		12: {ppid: 11, user: 100, system: 200, reapedUser: 60, reapedSystem: 150, name: "paddock-sandbox-spawner"},
		13: {ppid: 12, user: 3, system: 4, name: "paddock-sandbox-init"},
		14: {ppid: 12, user: 5, system: 6, name: "paddock-sandbox-init"},
	}
	got, ok := treeCPUByProcess(procs, 10)
	if !ok {
		t.Fatal("root not found")
	}
	want := map[string]CPUTime{
		"paddock up":              ticks(1, 2),
		"paddock runner":          ticks(10, 20),
		"paddock-sandbox-spawner": ticks(40, 50),
		"paddock-sandbox-spawner (reaped children)": ticks(60, 150),
		"paddock-sandbox-init":                      ticks(8, 10),
	}
	if len(got) != len(want) {
		t.Errorf("split %v, want %v", got, want)
	}
	for name, c := range want {
		if got[name] != c {
			t.Errorf("%s: %+v, want %+v", name, got[name], c)
		}
	}
	if sum, total := Sum(got), func() CPUTime { c, _ := treeCPU(procs, 10); return c }(); sum != total {
		t.Errorf("split sums to %+v, tree total %+v", sum, total)
	}
	for cmdline, want := range map[string]string{
		"/usr/bin/paddock\x00up\x00--data\x00/d\x00": "paddock up",
		"paddock-sandbox-spawner\x00":                "paddock-sandbox-spawner",
		"/bin/sh\x00-c\x00x\x00":                     "sh",
		"":                                           "?",
	} {
		if got := processName([]byte(cmdline)); got != want {
			t.Errorf("processName(%q) = %q, want %q", cmdline, got, want)
		}
	}
}

// burnEnv makes the test binary a CPU burner: TestBurnHelper does the
// work and exits.
const burnEnv = "PADDOCK_BENCH_TEST_BURN"

// TestBurnHelper is not a test: run with burnEnv set, it spends that many
// milliseconds of CPU (measured with getrusage) and exits.
func TestBurnHelper(t *testing.T) {
	ms, err := strconv.Atoi(os.Getenv(burnEnv))
	if err != nil {
		t.Skip("a helper process for TestProcessTreeCPU")
	}
	x := uint64(1)
	for {
		for range 100000 {
			x = x*6364136223846793005 + 1
		}
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatalf("getrusage: %v", err) // or the loop would never end
		}
		if time.Duration(ru.Utime.Nano()+ru.Stime.Nano()) >= time.Duration(ms)*time.Millisecond {
			fmt.Fprintln(io.Discard, x) // x is used: the loop stays
			os.Exit(0)
		}
	}
}

// The real /proc: a shell with a live child shell, which runs a burner
// to completion and reaps it. The burner's CPU shows in the tree's
// reading although it is gone, and the machine's reading sees it too.
func TestProcessTreeCPU(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	const burn = 300 * time.Millisecond
	// "; exit" keeps each shell from exec'ing its last command, so the
	// tree is sh -> sh -> burner while it burns.
	cmd := exec.Command("sh", "-c", `sh -c 'read x; "$BURNER" -test.run="^TestBurnHelper$"; echo done; read y; exit 0'; exit 0`)
	cmd.Env = append(os.Environ(), "BURNER="+os.Args[0], fmt.Sprintf("%s=%d", burnEnv, burn.Milliseconds()))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := cmd.Wait(); err != nil {
			t.Errorf("shells: %v", err)
		}
	}()
	defer stdin.Close() // the shells' last read ends: they exit

	before, machineBefore := cpuReadings(t, cmd.Process.Pid)
	if _, err := stdin.Write([]byte("go\n")); err != nil {
		t.Fatalf("starting the burner: %v", err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "done" {
		t.Fatalf("burner: %q, %v", line, err)
	}
	// The burner has exited and the inner shell has reaped it (it printed
	// "done" after waiting); both shells are alive, blocked in read.
	after, machineAfter := cpuReadings(t, cmd.Process.Pid)
	used := after.Sub(before)
	t.Logf("tree: %v user, %v system; machine: %v", used.User, used.System, machineAfter.Sub(machineBefore).Total())
	// At least the burn, less the rounding of each reading to 10 ms ticks;
	// at most the burn plus the start-up of one Go test binary, with a
	// wide margin (counting the burner twice would exceed it).
	if used.Total() < burn-50*time.Millisecond || used.Total() > 2*burn-50*time.Millisecond {
		t.Errorf("the tree used %v of CPU, want about %v", used.Total(), burn)
	}
	if m := machineAfter.Sub(machineBefore).Total(); m < burn-50*time.Millisecond {
		t.Errorf("the machine used %v of CPU while a child burnt %v", m, burn)
	}
	if _, err := ProcessTreeCPU(1 << 30); err == nil {
		t.Error("ProcessTreeCPU of a pid that does not exist: no error")
	}
}

// cpuReadings are the CPU time of the process tree of pid, and of the
// machine, now.
func cpuReadings(t *testing.T, pid int) (tree, machine CPUTime) {
	t.Helper()
	tree, err := ProcessTreeCPU(pid)
	if err != nil {
		t.Fatal(err)
	}
	machine, err = MachineCPU()
	if err != nil {
		t.Fatal(err)
	}
	return tree, machine
}

// checkParse checks that parse, named name, parses text as want, or, where
// wantErr, refuses it.
func checkParse[T comparable](t *testing.T, name string, parse func([]byte) (T, error), text string, want T, wantErr bool) {
	t.Helper()
	got, err := parse([]byte(text))
	if wantErr {
		if err == nil {
			t.Fatalf("parsed %q as %+v, want an error", text, got)
		}
		return
	}
	if err != nil || got != want {
		t.Fatalf("%s = %+v, %v; want %+v", name, got, err, want)
	}
}
