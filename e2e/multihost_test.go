package e2e

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/paddock-build/paddock/internal/bazeltest"
)

// TestMultiHostBuildSurvivesAWorker: the roles on separate machines, each
// machine a network namespace of its own on a switch (netlab): storage,
// the scheduler, two workers each with its runner, and the Bazel client.
// Nothing talks over loopback between machines. Bazel 4.2.3 builds
// testdata/fanout with every action remote; once the first worker is
// running actions it is killed (SIGKILL). The scheduler retries its
// actions on the other worker, and the build succeeds with every output
// right.
func TestMultiHostBuildSurvivesAWorker(t *testing.T) {
	needPaddock(t)
	b := newFanoutBazel(t)
	lab := newNetlab(t)
	storageIP, schedIP := lab.machine("storage"), lab.machine("scheduler")
	lab.machine("worker1")
	lab.machine("worker2")
	lab.machine("client")
	dir := searchableTempDir(t)
	start := func(name, machine string, ready *regexp.Regexp, args ...string) *process {
		t.Helper()
		p, _, err := tryStartExecutable(t, name, ready, "nsenter", append(append(lab.enter(machine)[1:], paddockBin), args...)...)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	storageAddr, schedAddr := storageIP+":8980", schedIP+":8981"
	storage := start("storage", "storage", regexp.MustCompile(`^paddock storage listening on (\S+)`),
		"storage", "--listen", storageAddr, "--dir", filepath.Join(dir, "storage"))
	schedCfg := filepath.Join(dir, "scheduler.yaml")
	writeFile(t, schedCfg, "reconnect_grace: 2s\nlease_duration: 10s\nheartbeat_interval: 1s\ntick_interval: 100ms\n", 0o644)
	sched := start("scheduler", "scheduler", regexp.MustCompile(`^paddock scheduler listening on (\S+)`),
		"scheduler", "--listen", schedAddr, "--storage", storageAddr, "--config", schedCfg)

	var runners, workers []*process
	for i, w := range []string{"worker1", "worker2"} {
		home := filepath.Join(dir, w)
		cfg := filepath.Join(home, "runner.yaml")
		// Runners of their own id ranges and cgroups, as on two machines.
		writeFile(t, cfg, "socket: "+filepath.Join(home, "runner.sock")+"\nstate_dir: "+filepath.Join(home, "runner")+
			"\nmax_sandboxes: 8\nid_base: "+[]string{"1000000", "2000000"}[i]+
			"\nsandbox:\n  cgroup_parent: paddock-e2e-"+w+"\n", 0o644)
		runners = append(runners, start("runner-"+w, w, runnerReady, "runner", "--config", cfg, "--hide", home))
		workers = append(workers, start(w, w, nil, "worker", "--id", w, "--concurrency", "4",
			"--scheduler", schedAddr, "--storage", storageAddr,
			"--runner", filepath.Join(home, "runner.sock"), "--dir", filepath.Join(home, "work")))
	}
	for _, w := range []string{"worker1", "worker2"} {
		waitFor(t, w+" connected to the scheduler", faultLimit, func() bool {
			return strings.Contains(sched.log(), `msg="scheduler: worker connected" worker=`+w+" ")
		})
	}

	b.Prefix = lab.enter("client")
	wantAll := fanoutAggregate(t, filepath.Join(b.WS, "src"))
	type result struct {
		out  string
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		out, code, err := b.Exec("build", append(b.remoteFlags(schedAddr), "--action_env=PADDOCK_SALT="+rand.Text(), "//...")...)
		done <- result{out, code, err}
	}()

	// Kill worker1 while it has actions in hand: its build directories
	// exist while it runs some. It is stopped first, so that it cannot
	// report them done between the look and the kill.
	builds := filepath.Join(dir, "worker1", "work", "builds")
	waitFor(t, "worker1 running actions", bazeltest.CommandTimeout, func() bool {
		entries, _ := os.ReadDir(builds)
		return len(entries) > 0
	})
	if err := workers[0].cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	workers[0].kill()
	lost := regexp.MustCompile(`worker1.*worker lost with (\d+) action`)
	var m []string
	waitFor(t, "the scheduler to notice worker1 is gone", faultLimit, func() bool {
		m = lost.FindStringSubmatch(sched.log())
		return m != nil
	})
	t.Logf("worker1 killed; the scheduler says: %s", m[0])
	if m[1] == "0" {
		t.Errorf("worker1 was killed with no action in hand: nothing to retry")
	}

	var r result
	select {
	case r = <-done:
	case <-time.After(bazeltest.CommandTimeout + time.Minute):
		t.Fatal("the build did not end")
	}
	if r.err != nil || r.code != 0 {
		t.Fatalf("bazel build after worker1 was killed: exit %d, %v\n%s", r.code, r.err, r.out)
	}
	summary := bazeltest.ProcessSummary(t, r.out)
	t.Logf("build: %v", summary)
	if summary["remote"] != fanoutActions || !onlyKinds(summary, "remote", "internal") {
		t.Errorf("process summary %v, want all %d actions executed remotely\n%s", summary, fanoutActions, r.out)
	}
	if all, err := os.ReadFile(filepath.Join(b.WS, "bazel-bin", "all", "0.txt")); err != nil || string(all) != wantAll {
		t.Errorf("bazel-bin/all/0.txt = %q (%v)\nwant (computed from the sources) %q", all, err, wantAll)
	}
	if log := sched.log(); !strings.Contains(log, "requeued (retry 1 of") {
		t.Errorf("the scheduler requeued none of worker1's actions:\n%s", log)
	}

	b.Shutdown()
	workers[1].stop(os.Interrupt)
	for _, r := range runners {
		r.stop(os.Interrupt)
	}
	sched.stop(os.Interrupt)
	storage.stop(os.Interrupt)
	checkNoProcessesLeft(t)
}
