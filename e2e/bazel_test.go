package e2e

import (
	"errors"
	"io/fs"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paddock-build/paddock/internal/bazeltest"
)

// TestBazelRemoteExecution builds and tests the workspace in testdata/ws
// with Bazel 4.2.3 executing every action on `paddock up`: a genrule chain,
// a cc_library + cc_binary + cc_test compiled and linked by the host's gcc
// inside sandboxes, a genrule that runs the built binary, and a passing
// sh_test. It then checks that after `bazel clean` everything comes back
// from the remote cache, and that a failing test is reported as failed and
// executed again (not served from the cache) the next time.
func TestBazelRemoteExecution(t *testing.T) {
	needPaddock(t)
	remoteExecutionSuite(t, newBazel(t))
}

// TestBazel210RemoteExecution runs TestBazelRemoteExecution's suite with
// Bazel 2.1.0, the oldest Bazel Paddock accepts (REv2 2.0 only, as 4.2.3),
// with the same offline stubs.
func TestBazel210RemoteExecution(t *testing.T) {
	needPaddock(t)
	remoteExecutionSuite(t, newBazel210(t))
}

// newBazel210 is newBazel with Bazel 2.1.0.
func newBazel210(t *testing.T) *bazel {
	return withStubs(t, bazeltest.NewRelease(t, "testdata/ws", bazeltest.Bazel210()))
}

// remoteExecutionSuite is the body of TestBazelRemoteExecution, run by
// each Bazel version.
func remoteExecutionSuite(t *testing.T, b *bazel) {
	f := startUp(t, "")
	flags := b.remoteFlags(f.addr)

	// First build: every action runs remotely.
	out := b.Run(0, "test", append(flags, "//...")...)
	summary := bazeltest.ProcessSummary(t, out)
	remote := summary["remote"]
	t.Logf("first build: %v", summary)
	if remote == 0 || !onlyKinds(summary, "remote", "internal") {
		t.Fatalf("first build: process summary %v, want only remote (and Bazel-internal) actions\n%s", summary, out)
	}
	// 3 genrules, 2 tests, and at least a compile and a link for each of
	// the library, binary and test.
	if remote < 3+2+4 {
		t.Errorf("first build ran %d actions remotely, want at least 9\n%s", remote, out)
	}
	for _, target := range []string{"//:greet_test", "//:pass_test"} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(target) + `\s+PASSED`).MatchString(out) {
			t.Errorf("first build: %s did not pass\n%s", target, out)
		}
	}
	want := map[string]string{
		"bazel-bin/report.txt":               "HELLO FROM PADDOCK\nhello, paddock\n",
		"bazel-bin/hello.txt":                "hello, paddock\n",
		"bazel-testlogs/pass_test/test.log":  "pass_test ok",
		"bazel-testlogs/greet_test/test.log": "greet_test ok",
		"bazel-bin/shout.txt":                "HELLO FROM PADDOCK\n",
		"bazel-testlogs/greet_test/test.xml": `<testsuite name="greet_test"`,
		"bazel-testlogs/pass_test/test.xml":  `<testsuite name="pass_test"`,
		"bazel-bin/greeting.txt":             "hello from paddock\n",
	}
	first := b.checkOutputs(want)

	// The binary linked remotely runs here too.
	if got, err := exec.Command(filepath.Join(b.WS, "bazel-bin", "hello")).Output(); err != nil || string(got) != "hello, paddock\n" {
		t.Errorf("bazel-bin/hello printed %q (%v), want \"hello, paddock\\n\"", got, err)
	}

	// After `bazel clean`, the same build is all remote cache hits, with
	// the same bytes.
	b.Run(0, "clean")
	if _, err := os.Stat(filepath.Join(b.WS, "bazel-bin", "report.txt")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("report.txt survived bazel clean (stat: %v)", err)
	}
	out = b.Run(0, "test", append(flags, "//...")...)
	summary = bazeltest.ProcessSummary(t, out)
	t.Logf("rebuild after clean: %v", summary)
	if summary["remote cache hit"] != remote || !onlyKinds(summary, "remote cache hit", "internal") {
		t.Errorf("rebuild after clean: process summary %v, want %d remote cache hits and nothing executed\n%s", summary, remote, out)
	}
	again := b.checkOutputs(want)
	for name, data := range first {
		if !strings.HasPrefix(name, "bazel-testlogs/") && again[name] != data {
			t.Errorf("%s after the cached rebuild = %q, the first build wrote %q", name, again[name], data)
		}
	}

	// An output found corrupt when Bazel downloads it (the blob damaged at
	// rest after the cached build) is NOT_FOUND, as the store has removed
	// it: Bazel takes it for an evicted output, runs the action again and
	// builds on. With DATA_LOSS, the build failed.
	b.Run(0, "clean")
	greeting := []byte(first["bazel-bin/greeting.txt"])
	damageStored(t, f, digestOf(greeting), func(b []byte) []byte { b[0] ^= 1; return b })
	out = b.Run(0, "build", append(flags, "//:shout")...)
	summary = bazeltest.ProcessSummary(t, out)
	t.Logf("rebuild with greeting.txt damaged in the CAS: %v", summary)
	if summary["remote"] < 1 {
		t.Errorf("rebuild with a damaged output: process summary %v, want the genrule that wrote it executed again\n%s", summary, out)
	}
	b.checkOutputs(map[string]string{"bazel-bin/greeting.txt": "hello from paddock\n", "bazel-bin/shout.txt": "HELLO FROM PADDOCK\n"})

	// A failing test fails, and is executed again the next time: a failed
	// result is never cached. Its log says something new on every run.
	var logs []string
	for i := range 2 {
		out = b.Run(3, "test", append(flags, "//:fail_test")...) // 3: tests failed
		if !regexp.MustCompile(`(?m)^//:fail_test\s+FAILED`).MatchString(out) {
			t.Errorf("run %d of //:fail_test: not reported as FAILED\n%s", i+1, out)
		}
		summary = bazeltest.ProcessSummary(t, out)
		t.Logf("run %d of //:fail_test: %v", i+1, summary)
		// The test, and Bazel's test.xml generation from its log.
		if summary["remote"] != 2 || !onlyKinds(summary, "remote", "internal") {
			t.Errorf("run %d of //:fail_test: process summary %v, want the test and its test.xml generated remotely, nothing cached\n%s", i+1, summary, out)
		}
		log, err := os.ReadFile(filepath.Join(b.WS, "bazel-testlogs", "fail_test", "test.log"))
		if err != nil || !strings.Contains(string(log), "fail_test runs and fails: run ") {
			t.Fatalf("run %d of //:fail_test: test.log %q (%v), want the test's output", i+1, log, err)
		}
		logs = append(logs, string(log))
	}
	if logs[0] == logs[1] {
		t.Errorf("the second run of //:fail_test has the first run's log, so it was not executed again:\n%s", logs[1])
	}

	b.Shutdown()
	f.shutdown()
}

// TestBazelWorkerKilled: the worker running a Bazel action is killed with
// SIGKILL, and the build still succeeds: the scheduler requeues the action
// to another worker. The roles run as separate processes (storage,
// scheduler, runner, workers), and Bazel talks to the scheduler alone.
func TestBazelWorkerKilled(t *testing.T) {
	needPaddock(t)
	workerKilledSuite(t, newBazel(t))
}

// TestBazel210WorkerKilled is TestBazelWorkerKilled with Bazel 2.1.0.
func TestBazel210WorkerKilled(t *testing.T) {
	needPaddock(t)
	workerKilledSuite(t, newBazel210(t))
}

// workerKilledSuite is the body of TestBazelWorkerKilled, run by each
// Bazel version.
func workerKilledSuite(t *testing.T, b *bazel) {
	rs := newRoles(t)
	rs.startWorker("w1")
	g := newGate(t)
	first, done := startGatedBuild(t, b, rs.schedAddr, g)
	rs.worker.kill()
	checkKilled(t, first, faultLimit)
	rs.startWorker("w2")
	second := g.attempt(faultLimit)
	if _, err := second.Write([]byte("go\n")); err != nil {
		t.Fatalf("telling the gated action to go: %v", err)
	}
	second.Close()
	checkGatedBuild(t, b, done, "with its worker killed")
	b.Shutdown()
	rs.stop()
}

// onlyKinds reports whether summary has no kinds but the given ones.
func onlyKinds(summary map[string]int, kinds ...string) bool {
	for k := range summary {
		found := false
		for _, want := range kinds {
			found = found || k == want
		}
		if !found {
			return false
		}
	}
	return true
}

// bazel is a Bazel client in a copy of testdata/ws, with the offline stub
// repositories of testdata/stubs.
type bazel struct {
	*bazeltest.Bazel
	t     *testing.T
	stubs string
}

func newBazel(t *testing.T) *bazel {
	b := bazeltest.New(t, "testdata/ws")
	stubs, err := filepath.Abs("testdata/stubs")
	if err != nil {
		t.Fatal(err)
	}
	return &bazel{Bazel: b, t: t, stubs: stubs}
}

// remoteFlags are the flags that make Bazel execute everything on the farm
// at addr, offline.
func (b *bazel) remoteFlags(addr string) []string {
	flags := []string{
		"--noshow_progress", "--color=no", "--curses=no",
		"--remote_executor=grpc://" + addr,
		"--spawn_strategy=remote",
		"--noremote_local_fallback",
		// Routed like an RBE platform, under an instance name of its own.
		"--remote_instance_name=e2e",
		"--remote_default_exec_properties=OSFamily=Linux",
		// PATH=/bin:/usr/bin:/usr/local/bin for every action, whatever the
		// PATH of the shell running the tests.
		"--incompatible_strict_action_env",
	}
	// Bazel 4.2.3 would download these; see testdata/stubs/README.md.
	for _, repo := range []string{"rules_cc", "rules_java", "remote_coverage_tools"} {
		flags = append(flags, "--override_repository="+repo+"="+filepath.Join(b.stubs, repo))
	}
	return flags
}

// checkOutputs reads each file (relative to the workspace) and checks that
// it contains the wanted text; it returns what it read.
func (b *bazel) checkOutputs(want map[string]string) map[string]string {
	b.t.Helper()
	got := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		data, err := os.ReadFile(filepath.Join(b.WS, name))
		if err != nil {
			b.t.Errorf("output %s: %v", name, err)
			continue
		}
		got[name] = string(data)
		if !strings.Contains(string(data), want[name]) {
			b.t.Errorf("output %s = %q, want it to contain %q", name, data, want[name])
		}
	}
	return got
}

// bazelResult is how a `bazel build` run in the background ended.
type bazelResult struct {
	out  string
	code int
	err  error
}

// checkGatedBuild waits for the end of a build from startGatedBuild and
// checks that it succeeded, with its one action executed remotely and its
// output right; what is what the build went through, for the messages.
func checkGatedBuild(t *testing.T, b *bazel, done <-chan bazelResult, what string) {
	t.Helper()
	r := <-done
	if r.err != nil || r.code != 0 {
		t.Fatalf("bazel build %s: exit code %d, %v\n%s", what, r.code, r.err, r.out)
	}
	summary := bazeltest.ProcessSummary(t, r.out)
	t.Logf("build %s: %v", what, summary)
	if summary["remote"] != 1 || !onlyKinds(summary, "remote", "internal") {
		t.Errorf("process summary %v, want the one action executed remotely\n%s", summary, r.out)
	}
	b.checkOutputs(map[string]string{"bazel-bin/gated.txt": "go\n"})
}

// startGatedBuild starts `bazel build //:gated` against the scheduler at
// addr in the background and returns once the gated action runs, with its
// connection to g, and the channel the build's end comes on.
func startGatedBuild(t *testing.T, b *bazel, addr string, g *gate, extra ...string) (net.Conn, <-chan bazelResult) {
	t.Helper()
	flags := append(append(b.remoteFlags(addr), extra...), "--action_env=GATE_PORT="+strconv.Itoa(g.lis.Addr().(*net.TCPAddr).Port), "//:gated")
	done := make(chan bazelResult, 1)
	go func() {
		out, code, err := b.Exec("build", flags...)
		done <- bazelResult{out, code, err}
	}()
	select {
	case c := <-g.conns:
		g.started(c, faultLimit)
		return c, done
	case r := <-done:
		t.Fatalf("bazel build ended before the action ran: exit %d, %v\n%s", r.code, r.err, r.out)
	case <-time.After(bazeltest.CommandTimeout):
		t.Fatal("the gated action did not start")
	}
	return nil, nil
}
