package sandbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// leakSnapshot is what a sandbox could leak, in the runner and on the host.
type leakSnapshot struct {
	hostMounts int // mounts in the runner's (the host's) namespace
	runnerFDs  int
	spawnerFDs int // not counting the pooled cgroups' open control files
	// strayCgroupFDs are the spawner's descriptors of cgroup files outside
	// every sandbox cgroup that still exists.
	strayCgroupFDs  []string
	spawnerChildren string
	cgroups         []string // sandbox cgroups under the test parent
	sandboxProcs    []string // host processes running as a mapped uid
}

func takeLeakSnapshot(t *testing.T, l *Launcher) leakSnapshot {
	t.Helper()
	s := leakSnapshot{hostMounts: countMounts(t), runnerFDs: countDir(t, "/proc/self/fd")}
	spawner := l.b.(*nativeBackend).spawnerPid()
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", spawner))
	for _, task := range tasks {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", spawner, task.Name()))
		s.spawnerChildren += strings.TrimSpace(string(b))
	}
	for _, sub := range v1Subsystems {
		ents, _ := os.ReadDir(filepath.Join(cgroupRoot, sub, testCgroupParent))
		for _, e := range ents {
			if e.IsDir() {
				s.cgroups = append(s.cgroups, sub+"/"+e.Name())
			}
		}
	}
	// A pooled cgroup keeps its control files open (cgroupFiles); those
	// are bounded by the pool, and must belong to a cgroup that exists.
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", spawner))
	for _, fd := range fds {
		target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", spawner, fd.Name()))
		rel, ok := strings.CutPrefix(target, cgroupRoot+"/")
		if !ok {
			s.spawnerFDs++
			continue
		}
		// Others are the spawner's own cgroup's (the Go runtime watches
		// its CPU quota; threads return to its tasks files).
		if sub, rest, _ := strings.Cut(rel, "/"+testCgroupParent+"/"); rest != "" {
			if name, _, _ := strings.Cut(rest, "/"); !slices.Contains(s.cgroups, sub+"/"+name) {
				s.strayCgroupFDs = append(s.strayCgroupFDs, target)
			}
		}
	}
	s.sandboxProcs = sandboxProcesses(t)
	return s
}

func countDir(t *testing.T, p string) int {
	t.Helper()
	ents, err := os.ReadDir(p)
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestStressNoLeaks runs 2,000 sandboxes, four at a time, and checks that
// nothing is left: no extra mounts on the host, no sandbox cgroups, no
// sandbox processes, no children of the spawner, no extra descriptors in
// the runner or the spawner.
func TestStressNoLeaks(t *testing.T) {
	if testing.Short() {
		t.Skip("stress test skipped in -short mode")
	}
	l := newTestLauncher(t, Options{})
	bundle := writeBundle(t, testSpec("/bin/true"))
	run := func() {
		res, err := l.Run(context.Background(), Request{Bundle: bundle})
		if err != nil {
			t.Error(err)
			return
		}
		if res.ExitCode != 0 {
			t.Errorf("exit %d signal %v", res.ExitCode, res.Signal)
		}
	}
	run() // warm up: the spawner's and our own lazily opened descriptors
	// Quiescent: the spawner holds exactly its warm inits (and their pipes).
	deadline := time.Now().Add(10 * time.Second)
	for warmInits(t) != defaultWarmInits && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	before := takeLeakSnapshot(t, l)
	const total, parallel = 2000, 4
	start := time.Now()
	var wg sync.WaitGroup
	work := make(chan struct{})
	for i := 0; i < parallel; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				run()
			}
		}()
	}
	for i := 0; i < total && !t.Failed(); i++ {
		work <- struct{}{}
	}
	close(work)
	wg.Wait()
	elapsed := time.Since(start)
	t.Logf("%d sandboxes in %v (%v each, %d at a time)", total, elapsed, elapsed/total, parallel)
	// Cgroups are removed, and the last inits exit, just after each result
	// is sent; the next warm init is being started: poll until quiescent.
	deadline = time.Now().Add(10 * time.Second)
	after := takeLeakSnapshot(t, l)
	// Cgroups are pooled for reuse: at most as many as were ever in use at
	// once (running, being cleaned up, warm, warming) may remain, never a
	// number that grows with the sandboxes run.
	maxCgroups := 2 * (parallel + defaultWarmInits) * len(v1Subsystems)
	// The last inits may still be exiting (their namespaces torn down)
	// when the last result arrives: their pids are the spawner's children
	// until it reaps them.
	for (len(after.cgroups) > maxCgroups || after.spawnerFDs > before.spawnerFDs ||
		warmInits(t) != defaultWarmInits || len(strings.Fields(after.spawnerChildren)) > defaultWarmInits) &&
		time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		after = takeLeakSnapshot(t, l)
	}
	if after.hostMounts != before.hostMounts {
		t.Errorf("host mounts %d -> %d", before.hostMounts, after.hostMounts)
	}
	// More descriptors than before is a leak; fewer is not (the "before"
	// snapshot can catch the spawner with a warm init's pipes in flight).
	if after.runnerFDs > before.runnerFDs || after.spawnerFDs > before.spawnerFDs {
		t.Errorf("fds: runner %d -> %d, spawner %d -> %d", before.runnerFDs, after.runnerFDs, before.spawnerFDs, after.spawnerFDs)
	}
	if len(after.strayCgroupFDs) != 0 {
		t.Errorf("spawner holds files of cgroups that are gone: %v", after.strayCgroupFDs)
	}
	// What may remain while the launcher lives: the warm inits, and the
	// pooled cgroups.
	if n := len(strings.Fields(after.spawnerChildren)); n > defaultWarmInits || warmInits(t) > defaultWarmInits {
		t.Errorf("spawner children %q, %d warm inits; want at most the %d warm inits", after.spawnerChildren, warmInits(t), defaultWarmInits)
	}
	if len(after.cgroups) > maxCgroups {
		t.Errorf("sandbox cgroups left: %v", after.cgroups)
	}
	if len(after.sandboxProcs) != 0 {
		t.Errorf("sandbox processes left: %v", after.sandboxProcs)
	}
	// After Close, nothing at all.
	if err := l.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if n := warmInits(t); n != 0 {
		t.Errorf("%d warm inits left after Close", n)
	}
	for _, sub := range v1Subsystems {
		if _, err := os.Stat(filepath.Join(cgroupRoot, sub, testCgroupParent)); err == nil {
			t.Errorf("cgroup parent %s/%s left after Close", sub, testCgroupParent)
		}
	}
	if n := countMounts(t); n != before.hostMounts {
		t.Errorf("host mounts %d -> %d after Close", before.hostMounts, n)
	}
}
