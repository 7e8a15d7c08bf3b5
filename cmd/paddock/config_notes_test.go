package main

import (
	"fmt"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/paddock-build/paddock/configs"
)

// TestPrintConfigNamesMachineDefaults: a key whose 0 stands for a value
// the role computes on this machine is printed as 0, which is what a file
// must say to mean the same elsewhere, with a comment naming that value
// here; the printed file still loads back and prints the same. Before,
// `paddock runner --print-config` printed a bare `concurrency: 0` while
// up printed `concurrency: 2` under runner, and neither said what the
// runner's memory limits would be.
func TestPrintConfigNamesMachineDefaults(t *testing.T) {
	cpus := fmt.Sprintf("the number of CPUs: %d here", runtime.NumCPU())
	mem := regexp.MustCompile(`(?m)^\s*default_memory_limit: 0 # \(the host's memory - a reserve\) / concurrency: [0-9.]+[KMGT]iB here$`)
	tmp := regexp.MustCompile(`(?m)^\s*tmp_size: 0 # half the action's memory limit: [0-9.]+[KMGT]iB here`)

	out := runPrintConfig(t, "runner")
	for _, want := range []string{"\nconcurrency: 0 # " + cpus + "\n", "\nmax_memory_limit: 0 # the host's memory: ",
		"\n  dir: \"\" # <state_dir>/images: /var/lib/paddock/runner/images\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("runner --print-config lacks %q:\n%s", want, out)
		}
	}
	if !mem.Match(out) || !tmp.Match(out) {
		t.Errorf("runner --print-config does not name its memory defaults:\n%s", out)
	}
	checkPrinted(t, "runner", out, configs.DefaultRunner, func(c configs.Runner) {
		if c.Concurrency != 0 || c.DefaultMemoryLimit != 0 || c.TmpSize != 0 {
			t.Errorf("the printed runner config loads as %+v, want its zeros kept", c)
		}
	})

	w := runPrintConfig(t, "worker")
	if !strings.Contains(string(w), "\nid: \"\" # the host name: ") || !strings.Contains(string(w), "\nplatform: [] # this machine's: OSFamily=") {
		t.Errorf("worker --print-config does not name its id and platform here:\n%s", w)
	}
	checkPrinted(t, "worker", w, configs.DefaultWorker, func(configs.Worker) {})

	u := runPrintConfig(t, "up", "--data", filepath.Join(t.TempDir(), "farm"))
	if !mem.Match(u) || !tmp.Match(u) || !strings.Contains(string(u), "\n  platform: [] # this machine's: ") {
		t.Errorf("up --print-config does not name its runner's memory defaults and its worker's platform:\n%s", u)
	}
	checkPrinted(t, "up", u, func() configs.Up { return configs.DefaultUp("/elsewhere") }, func(configs.Up) {})
}

// TestRunnerNotesFollowTheRunner: the notes name the values the runner's
// own rule (runner.Config.WithHostLimits) computes from given figures.
func TestRunnerNotesFollowTheRunner(t *testing.T) {
	m := machine{memory: 8 << 30, cpus: 4, hostname: "h"}
	r := configs.DefaultRunner()
	n := runnerNotes(r, m, "")
	for k, want := range map[string]string{
		"concurrency":          "the number of CPUs: 4 here",
		"max_memory_limit":     "the host's memory: 8.0GiB here",
		"default_memory_limit": "(the host's memory - a reserve) / concurrency: 1.8GiB here",
		"tmp_size":             "half the action's memory limit: 921.5MiB here with the default limit",
		"max_shm_size":         "the action's memory limit: 1.8GiB here with the default limit",
	} {
		if n[k] != want {
			t.Errorf("note for %s = %q, want %q", k, n[k], want)
		}
	}
	r.Concurrency, r.MaxMemoryLimit, r.TmpSize = 2, 1<<30, 64<<20
	n = runnerNotes(r, m, "runner.")
	if _, ok := n["runner.concurrency"]; ok || n["runner.default_memory_limit"] != "(the host's memory - a reserve) / concurrency: 1.0GiB here" {
		t.Errorf("with concurrency 2 and max_memory_limit 1GiB: notes %v; want none for concurrency, the default capped at 1GiB", n)
	}
	if _, ok := n["runner.tmp_size"]; ok {
		t.Errorf("a tmp_size that is set got a note: %v", n)
	}
}
