package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/paddock-build/paddock/internal/bazeltest"
)

// labFarm is storage, a scheduler and two workers, each worker with its
// runner, on the machines of a netlab (storage, scheduler, worker1,
// worker2; a client machine is left for the test's client).
type labFarm struct {
	t                      *testing.T
	lab                    *netlab
	dir                    string
	storageAddr, schedAddr string
	storage, sched         *process
	runners, workers       []*process
	workerNames            []string
}

func startLabFarm(t *testing.T, lab *netlab) *labFarm {
	t.Helper()
	f := &labFarm{t: t, lab: lab, dir: searchableTempDir(t), workerNames: []string{"worker1", "worker2"}}
	f.storageAddr, f.schedAddr = lab.machine("storage")+":8980", lab.machine("scheduler")+":8981"
	for _, w := range f.workerNames {
		lab.machine(w)
	}
	lab.machine("client")
	f.storage = f.start("storage", "storage", regexp.MustCompile(`^paddock storage listening on (\S+)`),
		"storage", "--listen", f.storageAddr, "--dir", filepath.Join(f.dir, "storage"), "--insecure")
	schedCfg := filepath.Join(f.dir, "scheduler.yaml")
	writeFile(t, schedCfg, "version: 1\nreconnect_grace: 2s\nlease_duration: 10s\nheartbeat_interval: 1s\ntick_interval: 100ms\n", 0o644)
	f.sched = f.start("scheduler", "scheduler", regexp.MustCompile(`^paddock scheduler listening on (\S+)`),
		"scheduler", "--listen", f.schedAddr, "--storage", f.storageAddr, "--config", schedCfg, "--insecure")
	for i, w := range f.workerNames {
		home := filepath.Join(f.dir, w)
		cfg := filepath.Join(home, "runner.yaml")
		// Runners of their own id ranges and cgroups, as on two machines.
		writeFile(t, cfg, "version: 1\nsocket: "+filepath.Join(home, "runner.sock")+"\nstate_dir: "+filepath.Join(home, "runner")+
			"\nmax_sandboxes: 8\nid_base: "+[]string{"1000000", "2000000"}[i]+
			"\nsandbox:\n  cgroup_parent: paddock-e2e-"+w+"\n", 0o644)
		f.runners = append(f.runners, f.start("runner-"+w, w, runnerReady, "runner", "--config", cfg, "--hide", home))
		f.workers = append(f.workers, f.start(w, w, nil, "worker", "--id", w, "--concurrency", "4",
			"--scheduler", f.schedAddr, "--storage", f.storageAddr,
			"--runner", filepath.Join(home, "runner.sock"), "--dir", filepath.Join(home, "work")))
	}
	// The test's process is on none of the lab's networks: it reads the
	// scheduler's log rather than call its admin API.
	for _, w := range f.workerNames {
		waitFor(t, w+" connected to the scheduler", faultLimit, func() bool {
			return strings.Contains(f.sched.log(), `msg="scheduler: worker connected" worker=`+w+" ")
		})
	}
	return f
}

// start runs `paddock args...` on machine.
func (f *labFarm) start(name, machine string, ready *regexp.Regexp, args ...string) *process {
	f.t.Helper()
	enter := f.lab.enter(machine)
	p, _, err := tryStartExecutable(f.t, name, ready, enter[0], append(append(enter[1:], paddockBin), args...)...)
	if err != nil {
		f.t.Fatal(err)
	}
	return p
}

// killWorkerWithActions kills worker i once it has actions in hand (its
// build directories exist while it runs some), stopping it first so that
// it cannot report them done between the look and the kill, and waits for
// the scheduler to count it lost with at least one action.
func (f *labFarm) killWorkerWithActions(i int) {
	f.t.Helper()
	w := f.workerNames[i]
	builds := filepath.Join(f.dir, w, "work", "builds")
	waitFor(f.t, w+" running actions", bazeltest.CommandTimeout, func() bool {
		entries, _ := os.ReadDir(builds)
		return len(entries) > 0
	})
	if err := f.workers[i].cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		f.t.Fatal(err)
	}
	f.workers[i].kill()
	lost := regexp.MustCompile(regexp.QuoteMeta(w) + `.*worker lost with (\d+) action`)
	var m []string
	waitFor(f.t, "the scheduler to notice "+w+" is gone", faultLimit, func() bool {
		m = lost.FindStringSubmatch(f.sched.log())
		return m != nil
	})
	f.t.Logf("%s killed; the scheduler says: %s", w, m[0])
	if m[1] == "0" {
		f.t.Errorf("%s was killed with no action in hand: nothing to retry", w)
	}
	f.workers[i] = nil
}

// stop stops every role still running with Ctrl-C and checks that nothing
// is left.
func (f *labFarm) stop() {
	f.t.Helper()
	for _, w := range f.workers {
		if w != nil {
			w.stop(os.Interrupt)
		}
	}
	for _, r := range f.runners {
		r.stop(os.Interrupt)
	}
	f.sched.stop(os.Interrupt)
	f.storage.stop(os.Interrupt)
	checkNoProcessesLeft(f.t)
}
