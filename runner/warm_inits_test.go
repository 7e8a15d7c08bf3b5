package runner

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/internal/proctest"
	"github.com/paddock-build/paddock/sandbox"
)

// TestCancelStormKeepsWarmInitsToLiveSlots: a worker that cancels its
// actions again and again, mid-setup and mid-run, and starts the next
// ones at once, finds the cancelled ones still holding their id slots
// (their sandboxes ignore SIGTERM and end at kill_grace), so its new
// actions take higher slots. Inits are kept warm only for the slots the
// live Runs need: throughout the storm and after it, at most warm_inits
// for each action the worker runs at once, never warm_inits for each of
// the (up to 16) slots the storm went through, which outlived it.
func TestCancelStormKeepsWarmInitsToLiveSlots(t *testing.T) {
	const concurrency, rounds, maxSlots = 2, 15, 24
	e := newTestEnv(t, func(c *Config) { c.MaxSandboxes = maxSlots })
	bound := concurrency * e.cfg.Sandbox.WarmInits

	// Each round starts the worker's actions and cancels them at one of
	// three points: at once (the runner is still setting up), when the
	// runner has given the input root to the slot (the sandbox is being
	// set up), and once the command runs; then the worker removes the
	// action's directory, as it does. Between rounds the warm inits are
	// counted: those seen at two counts in a row (an init started for a
	// Run that found none warm waits for its plan a moment too).
	highest, worst, seen := 0, map[int]int{}, map[int]int{}
	for r := 0; r < rounds; r++ {
		var wg sync.WaitGroup
		for i := 0; i < concurrency; i++ {
			a := e.newAction(t)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer close(done)
				_, err := e.client.Run(ctx, a.request("/bin/sh", "-c", "trap '' TERM; echo started; exec sleep 600"))
				if c := status.Code(err); c != codes.Canceled && c != codes.Unavailable {
					t.Errorf("Run: %v, want CANCELLED (or UNAVAILABLE: every slot busy)", err)
				}
			}()
			switch r % 3 {
			case 1:
				pollUntil(done, func() bool { return ownerOf(a.root) != 0 })
			case 2:
				pollUntil(done, func() bool { out, _ := a.output(t); return out == "started\n" })
			}
			cancel()
			<-done // the worker goes on at once: the sandbox may still run
			os.RemoveAll(filepath.Dir(a.root))
		}
		wg.Wait()
		now := warmInits(t, maxSlots)
		kept := map[int]int{}
		for pid, slot := range now {
			if s, ok := seen[pid]; ok && s == slot {
				kept[slot]++
			}
		}
		if total(kept) > total(worst) {
			worst = kept
		}
		seen = now
		for _, p := range sandboxProcessesIn(t, maxSlots) {
			highest = max(highest, p)
		}
	}
	t.Logf("the storm reached id slot %d; most warm inits kept at once, by slot: %v", highest, worst)
	if highest < concurrency {
		t.Fatalf("the storm never took a slot past %d: cancelled Runs did not hold theirs, and this test shows nothing", highest)
	}
	if total(worst) > bound {
		t.Errorf("%d warm inits during the storm (by slot: %v), want at most %d (warm_inits %d for each of the %d slots live Runs use)",
			total(worst), worst, bound, e.cfg.Sandbox.WarmInits, concurrency)
	}

	// Settled: the cancelled sandboxes have ended; the worker runs its
	// actions as usual, and still finds inits warm for them.
	waitFor(t, "the cancelled sandboxes to end", func() bool { return len(sandboxProcessesIn(t, maxSlots)) == 0 })
	for r := 0; r < 3; r++ {
		var wg sync.WaitGroup
		for i := 0; i < concurrency; i++ {
			a := e.newAction(t)
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := e.client.Run(context.Background(), a.request("/bin/true"))
				if err != nil || resp.StatusCode != 0 || resp.ExitCode != 0 {
					t.Errorf("Run after the storm: %v, %v; want success", resp, err)
				}
			}()
		}
		wg.Wait()
	}
	var warm map[int]int
	deadline := time.Now().Add(10 * time.Second)
	for {
		warm = bySlot(warmInits(t, maxSlots))
		n := total(warm)
		if (n >= e.cfg.Sandbox.WarmInits && n <= bound) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // poll
	}
	if n := total(warm); n < e.cfg.Sandbox.WarmInits || n > bound {
		t.Errorf("%d warm inits after the storm (by slot: %v), want %d to %d (warm_inits %d for each of the %d slots the worker uses)",
			n, warm, e.cfg.Sandbox.WarmInits, bound, e.cfg.Sandbox.WarmInits, concurrency)
	}
}

// pollUntil polls cond until it holds or done is closed (the Run ended
// first), for at most 30 seconds.
func pollUntil(done <-chan struct{}, cond func() bool) {
	deadline := time.Now().Add(30 * time.Second)
	for !cond() && time.Now().Before(deadline) {
		select {
		case <-done:
			return
		case <-time.After(2 * time.Millisecond): // poll
		}
	}
}

// ownerOf is the uid owning path, or 0 where it cannot be read.
func ownerOf(path string) uint32 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Sys().(*syscall.Stat_t).Uid
}

// total adds up counts by slot.
func total(bySlot map[int]int) int {
	n := 0
	for _, c := range bySlot {
		n += c
	}
	return n
}

// bySlot counts warm inits (pid: slot) by slot.
func bySlot(inits map[int]int) map[int]int {
	out := map[int]int{}
	for _, slot := range inits {
		out[slot]++
	}
	return out
}

// warmInits returns the id slot of each init this test process's spawner
// keeps warm (by pid), among the first slots: an init without children,
// blocked reading its control pipe (fd 3) for a plan it has not been
// given.
func warmInits(t testing.TB, slots int) map[int]int {
	t.Helper()
	out := map[int]int{}
	for _, p := range proctest.WithUIDIn(t, testIDBase, testIDBase+slots*sandbox.DefaultIDRange) {
		if isWarmInit(p) {
			out[p.PID] = (p.UID - testIDBase) / sandbox.DefaultIDRange
		}
	}
	return out
}

// sandboxProcessesIn lists the id slots (of the first slots) that have a
// process other than a warm init, one entry per process, sorted.
func sandboxProcessesIn(t testing.TB, slots int) []int {
	t.Helper()
	var out []int
	for _, p := range proctest.WithUIDIn(t, testIDBase, testIDBase+slots*sandbox.DefaultIDRange) {
		if !isWarmInit(p) {
			out = append(out, (p.UID-testIDBase)/sandbox.DefaultIDRange)
		}
	}
	sort.Ints(out)
	return out
}

// isWarmInit: a sandbox init of this test process's spawner, with no
// children, blocked in read(2) on fd 3, its control pipe (x86-64: system
// call 0; /proc/PID/syscall then starts "0 0x3 ").
func isWarmInit(p proctest.Process) bool {
	if p.Cmdline != "paddock-sandbox-init\x00" || proctest.HasChildren(p.PID) {
		return false
	}
	_, spawner, ok := proctest.Stat(p.PID)
	if !ok {
		return false
	}
	if _, parent, ok := proctest.Stat(spawner); !ok || parent != os.Getpid() {
		return false
	}
	sc, err := os.ReadFile(filepath.Join("/proc", fmt.Sprint(p.PID), "syscall"))
	return err == nil && strings.HasPrefix(string(sc), "0 0x3 ")
}
