package sandbox

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paddock-build/paddock/internal/timerslack"
)

// The spawner runs with the farm's timer slack on every thread (fewer
// wake-ups of Go's system monitor), and the command it sandboxes with the
// kernel's default, as it would anywhere else on the host.
func TestSandboxedCommandKeepsTheDefaultTimerSlack(t *testing.T) {
	l := newTestLauncher(t, Options{})
	out := runSpec(t, l, testSpec("/bin/busybox", "cat", "/proc/self/timerslack_ns"), Request{})
	if out.ExitCode != 0 {
		t.Fatalf("exit %d, stderr %q", out.ExitCode, out.stderr)
	}
	if got, want := strings.TrimSpace(out.stdout), strconv.FormatInt(timerslack.Default.Nanoseconds(), 10); got != want {
		t.Errorf("the command's timer slack is %s ns, want the kernel's default %s", got, want)
	}

	spawners := childSpawners(t)
	if len(spawners) == 0 {
		t.Fatal("no spawner among this process's children")
	}
	// The thread that starts the next warm init has the default while it
	// does (initStart.start): poll until none is starting one.
	deadline := time.Now().Add(5 * time.Second)
	for {
		off := threadsWithout(t, spawners, timerslack.Farm)
		if len(off) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("spawner threads without the farm's slack %v: %v", timerslack.Farm, off)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// threadsWithout lists the threads of processes pids whose timer slack is
// not d, with their slack.
func threadsWithout(t *testing.T, pids []int, d time.Duration) []string {
	t.Helper()
	var off []string
	for _, pid := range pids {
		tasks, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range tasks {
			tid, _ := strconv.Atoi(task.Name())
			got, err := timerslack.Of(tid)
			if os.IsNotExist(err) {
				continue // the thread has ended
			}
			if err != nil || got != d {
				off = append(off, fmt.Sprintf("%d/%d: %v (%v)", pid, tid, got, err))
			}
		}
	}
	return off
}

// childSpawners returns the pids of this process's children that are
// spawners.
func childSpawners(t *testing.T) []int {
	t.Helper()
	var pids []int
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	self := "PPid:\t" + strconv.Itoa(os.Getpid()) + "\n"
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		dir := filepath.Join("/proc", e.Name())
		status, err1 := os.ReadFile(filepath.Join(dir, "status"))
		cmdline, err2 := os.ReadFile(filepath.Join(dir, "cmdline"))
		if err1 != nil || err2 != nil || !strings.Contains(string(status), self) {
			continue
		}
		if arg0, _, _ := bytes.Cut(cmdline, []byte{0}); string(arg0) == spawnerArg0 {
			pids = append(pids, pid)
		}
	}
	return pids
}
