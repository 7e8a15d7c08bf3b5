package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/paddock-build/paddock/bench"
)

// BenchmarkStartTrue measures start+exit of a static `true` (busybox) in a
// sandbox with user, mount, pid, ipc, uts, net and cgroup namespaces and a
// read-only rootfs with /proc, /dev and /tmp, side by side: the native
// launcher, the same from a caller holding a 1 GiB heap, bubblewrap with
// the same namespaces, and runc with the same bundle.
//
//	go test ./sandbox -run '^$' -bench StartTrue -benchtime 200x
func BenchmarkStartTrue(b *testing.B) {
	requireRoot(b)
	spec := testSpec("/bin/true")
	b.Run("native", func(b *testing.B) {
		l := newTestLauncher(b, Options{})
		benchRun(b, l, Request{Bundle: writeBundle(b, spec), Spec: spec})
	})
	b.Run("native-1GiB-heap", func(b *testing.B) {
		heap := make([]byte, 1<<30)
		for i := 0; i < len(heap); i += 4096 {
			heap[i] = 1
		}
		l := newTestLauncher(b, Options{})
		benchRun(b, l, Request{Bundle: writeBundle(b, spec), Spec: spec})
		runtime.KeepAlive(heap)
	})
	b.Run("bwrap", func(b *testing.B) {
		bwrap, err := exec.LookPath("bwrap")
		if err != nil {
			b.Skip("bwrap not installed")
		}
		args := []string{"--unshare-user", "--uid", "0", "--gid", "0", "--unshare-pid",
			"--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup",
			"--ro-bind", testRootfs, "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
			"--die-with-parent", "/bin/true"}
		// bwrap's second process, pid 1 of the sandbox, sets the sandbox
		// up and outlives the bwrap that started it (which exits as soon
		// as the command's status arrives): orphaned, it would be reaped
		// by the host's init, and its CPU counted nowhere here. Adopted
		// and reaped by this process, it is counted like the native
		// launcher's inits.
		adoptOrphans(b)
		b.ResetTimer()
		cpu := cpuUsed(b, nil)
		for i := 0; i < b.N; i++ {
			if out, err := exec.Command(bwrap, args...).CombinedOutput(); err != nil {
				b.Fatalf("bwrap: %v: %s", err, out)
			}
			reapOrphans(b)
		}
		b.ReportMetric(float64(cpuUsed(b, nil)-cpu)/1e6/float64(b.N), "cpu-ms/op")
	})
	b.Run("runc", func(b *testing.B) {
		runc, err := exec.LookPath("runc")
		if err != nil {
			b.Skip("runc not installed")
		}
		l := newTestLauncher(b, Options{Runtime: runc, RuntimeRoot: b.TempDir()})
		benchRun(b, l, Request{Bundle: writeBundle(b, spec)})
	})
}

// BenchmarkStartTrueConcurrent is BenchmarkStartTrue's native case with
// one sandbox at a time and with two (a farm runs as many as it has
// cores). It reports the launcher's CPU per sandbox (cpu-ms/op) and the
// whole machine's (machine-cpu-ms/op, from /proc/stat), which also counts
// the kernel threads that tear the namespaces down after each sandbox.
//
//	go test ./sandbox -run '^$' -bench StartTrueConcurrent -benchtime 600x
func BenchmarkStartTrueConcurrent(b *testing.B) {
	requireRoot(b)
	spec := testSpec("/bin/true")
	for _, n := range []int{1, 2} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			l := newTestLauncher(b, Options{})
			req := Request{Bundle: writeBundle(b, spec), Spec: spec}
			if err := runRequestOK(l, req); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			cpu, machine := cpuUsed(b, l), machineCPU(b)
			errs := make(chan error, n)
			for g := range n {
				runs := b.N / n
				if g < b.N%n {
					runs++
				}
				go func() {
					var err error
					for i := 0; i < runs && err == nil; i++ {
						err = runRequestOK(l, req)
					}
					errs <- err
				}()
			}
			for range n {
				if err := <-errs; err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(cpuUsed(b, l)-cpu)/1e6/float64(b.N), "cpu-ms/op")
			b.ReportMetric(float64(machineCPU(b)-machine)/1e6/float64(b.N), "machine-cpu-ms/op")
		})
	}
}

// machineCPU is the whole machine's user and system time since boot.
func machineCPU(b *testing.B) time.Duration {
	c, err := bench.MachineCPU()
	if err != nil {
		b.Fatal(err)
	}
	return c.Total()
}

// BenchmarkStartTrueInterleaved runs one start+exit of each contender per
// iteration, in turn, so that both see the same machine load (the test
// machine is shared), and reports the median of each in ms and their
// ratio. bwrap-1GiB-heap does the same while the caller holds a 1 GiB
// heap: compare its native/bwrap ratio with bwrap's.
//
//	go test ./sandbox -run '^$' -bench StartTrueInterleaved -benchtime 200x
func BenchmarkStartTrueInterleaved(b *testing.B) {
	requireRoot(b)
	b.Run("bwrap", func(b *testing.B) { benchInterleaved(b, "bwrap") })
	b.Run("bwrap-1GiB-heap", func(b *testing.B) {
		heap := make([]byte, 1<<30)
		for i := 0; i < len(heap); i += 4096 {
			heap[i] = 1
		}
		benchInterleaved(b, "bwrap")
		runtime.KeepAlive(heap)
	})
	b.Run("runc", func(b *testing.B) { benchInterleaved(b, "runc") })
}

// benchInterleaved alternates the native launcher with one other contender
// (other work between two runs would skew the pair: runc, for one, leaves
// asynchronous clean-up behind).
func benchInterleaved(b *testing.B, other string) {
	path, err := exec.LookPath(other)
	if err != nil {
		b.Skip(other + " not installed")
	}
	bundle := writeBundle(b, testSpec("/bin/true"))
	native := newTestLauncher(b, Options{})
	bwrapArgs := []string{"--unshare-user", "--uid", "0", "--gid", "0", "--unshare-pid",
		"--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup",
		"--ro-bind", testRootfs, "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
		"--die-with-parent", "/bin/true"}
	contenders := []struct {
		name string
		run  func() error
	}{
		{"native", func() error { return runOK(native, bundle) }},
		{other, func() error { return exec.Command(path, bwrapArgs...).Run() }},
	}
	if other == "runc" {
		external := newTestLauncher(b, Options{Runtime: path, RuntimeRoot: b.TempDir()})
		contenders[1].run = func() error { return runOK(external, bundle) }
	}
	times := make([][]time.Duration, len(contenders))
	for _, c := range contenders { // warm up
		if err := c.run(); err != nil {
			b.Fatalf("%s: %v", c.name, err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j, c := range contenders {
			start := time.Now()
			if err := c.run(); err != nil {
				b.Fatalf("%s: %v", c.name, err)
			}
			times[j] = append(times[j], time.Since(start))
		}
	}
	b.StopTimer()
	for j, c := range contenders {
		b.ReportMetric(float64(median(times[j]))/1e6, c.name+"-ms")
	}
	b.ReportMetric(float64(median(times[0]))/float64(median(times[1])), "native/"+other)
}

func runOK(l *Launcher, bundle string) error {
	return runRequestOK(l, Request{Bundle: bundle})
}

// runRequestOK runs req and wants exit code 0.
func runRequestOK(l *Launcher, req Request) error {
	res, err := l.Run(context.Background(), req)
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("exit %d signal %v", res.ExitCode, res.Signal)
	}
	return nil
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// benchRun runs req back to back. The native launcher gets the spec in
// memory, as the runner passes it.
func benchRun(b *testing.B, l *Launcher, req Request) {
	b.Helper()
	// One run outside the timer: the spawner's first sandbox pays for
	// page-faulting the binary in.
	if _, err := l.Run(context.Background(), req); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	cpu := cpuUsed(b, l)
	for i := 0; i < b.N; i++ {
		res, err := l.Run(context.Background(), req)
		if err != nil {
			b.Fatal(err)
		}
		if res.ExitCode != 0 {
			b.Fatalf("exit %d signal %v", res.ExitCode, res.Signal)
		}
	}
	// CPU of everything the launcher started: the cost a busy farm pays.
	b.ReportMetric(float64(cpuUsed(b, l)-cpu)/1e6/float64(b.N), "cpu-ms/op")
}

// adoptOrphans makes this process the reaper of its orphaned descendants
// (PR_SET_CHILD_SUBREAPER) for the rest of b, which must have no child of
// its own left running: reapOrphans waits for any child.
func adoptOrphans(b *testing.B) {
	if kids := childrenOfSelf(b); len(kids) > 0 {
		b.Fatalf("children still running before the benchmark: %v", kids)
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) })
}

// reapOrphans waits for every child of this process to exit and reaps it.
func reapOrphans(b *testing.B) {
	for {
		_, err := syscall.Wait4(-1, nil, 0, nil)
		switch {
		case errors.Is(err, syscall.ECHILD):
			return
		case err != nil && !errors.Is(err, syscall.EINTR):
			b.Fatal(err)
		}
	}
}

// childrenOfSelf lists the pids of this process's children.
func childrenOfSelf(b *testing.B) []string {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		b.Fatal(err)
	}
	var kids []string
	for _, t := range tasks {
		data, err := os.ReadFile("/proc/self/task/" + t.Name() + "/children")
		if err == nil {
			kids = append(kids, strings.Fields(string(data))...)
		}
	}
	return kids
}

// cpuUsed is the CPU time this process and its descendants have used:
// getrusage of itself and its reaped children (bwrap, runc), plus, for the
// native launcher, the spawner's process tree (bench.ProcessTreeCPU: the
// spawner, the inits it reaped and the warm ones still waiting).
// Clock-tick granularity (10 ms) for the spawner; summed over many runs.
func cpuUsed(b *testing.B, l *Launcher) time.Duration {
	var total time.Duration
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		if err := syscall.Getrusage(who, &ru); err != nil {
			b.Fatal(err)
		}
		total += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	if l == nil {
		return total
	}
	nb, ok := l.b.(*nativeBackend)
	if !ok {
		return total
	}
	spawner, err := bench.ProcessTreeCPU(nb.spawnerPid())
	if err != nil {
		b.Fatal(err)
	}
	return total + spawner.Total()
}
