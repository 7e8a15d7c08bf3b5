package timerslack

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// resetAfter puts every thread of the test process back to Default when
// the test ends, so that no other test runs with a changed slack.
func resetAfter(t *testing.T) {
	t.Cleanup(func() {
		if err := Set(Default); err != nil {
			t.Errorf("reset: %v", err)
		}
	})
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("setting another thread's slack needs CAP_SYS_NICE; CI runs as root")
	}
}

// Every thread has the slack Set gave, the runtime's own (sysmon's among
// them) included, and so has every thread started afterwards.
func TestSetReachesEveryThread(t *testing.T) {
	requireRoot(t)
	resetAfter(t)
	// Threads of their own, started before Set.
	release := make(chan struct{})
	var wg sync.WaitGroup
	holdThreads(4, release, &wg)
	defer func() { close(release); wg.Wait() }()
	waitForThreads(t, 6)

	if err := Set(Farm); err != nil {
		t.Fatalf("Set: %v", err)
	}
	before, err := threads()
	if err != nil {
		t.Fatal(err)
	}
	// Threads started after Set: goroutines locked to threads while the
	// others are held, so that the runtime must start new ones.
	holdThreads(4, release, &wg)
	waitForThreads(t, len(before)+1)
	tids, err := threads()
	if err != nil {
		t.Fatal(err)
	}
	for _, tid := range tids {
		if got, err := Of(tid); err != nil {
			t.Errorf("thread %d: %v", tid, err)
		} else if got != Farm {
			t.Errorf("thread %d has slack %v, want %v", tid, got, Farm)
		}
	}
}

// A child started inside WithDefault has Default, one started outside the
// farm's slack; and the starting thread keeps the farm's slack.
func TestWithDefaultGivesTheChildTheKernelDefault(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	prev, err := Get()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = setOwn(prev) }()
	if err := setOwn(Farm); err != nil {
		t.Fatal(err)
	}

	childSlack := func(wrap bool) string {
		cmd := exec.Command("cat", "/proc/self/timerslack_ns")
		var out strings.Builder
		cmd.Stdout = &out
		start := cmd.Start
		if wrap {
			start = func() error { return WithDefault(cmd.Start) }
		}
		if err := start(); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out.String())
	}
	if got, want := childSlack(false), "500000"; got != want {
		t.Fatalf("a child started from a thread with %v has slack %s, want %s (the test's premise)", Farm, got, want)
	}
	if got, want := childSlack(true), "50000"; got != want {
		t.Errorf("a child started by WithDefault has slack %s, want %s", got, want)
	}
	if d, err := Get(); err != nil || d != Farm {
		t.Errorf("after WithDefault the thread has slack %v (%v), want %v back", d, err, Farm)
	}
}

// holdThreads starts n goroutines that each keep an OS thread of their own
// until release is closed.
func holdThreads(n int, release <-chan struct{}, wg *sync.WaitGroup) {
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			<-release
		}()
	}
}

// waitForThreads waits until the process has at least n threads.
func waitForThreads(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		tids, err := threads()
		if err != nil {
			t.Fatal(err)
		}
		if len(tids) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d threads, want at least %d", len(tids), n)
		}
		runtime.Gosched()
	}
}
