package e2e

import (
	"context"
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
	bazel, err := exec.LookPath("bazel")
	if err != nil {
		t.Skip("bazel is not on PATH; install Debian's bazel-bootstrap (Bazel 4.2.3) to run the Bazel end-to-end test")
	}
	if testing.Short() {
		t.Skip("Bazel builds take a minute; skipped in -short mode")
	}
	f := startUp(t, "")
	b := newBazel(t, bazel)
	flags := b.remoteFlags(f.addr)

	// First build: every action runs remotely.
	out := b.run(0, "test", append(flags, "//...")...)
	summary := processSummary(t, out)
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
	if got, err := exec.Command(filepath.Join(b.ws, "bazel-bin", "hello")).Output(); err != nil || string(got) != "hello, paddock\n" {
		t.Errorf("bazel-bin/hello printed %q (%v), want \"hello, paddock\\n\"", got, err)
	}

	// After `bazel clean`, the same build is all remote cache hits, with
	// the same bytes.
	b.run(0, "clean")
	if _, err := os.Stat(filepath.Join(b.ws, "bazel-bin", "report.txt")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("report.txt survived bazel clean (stat: %v)", err)
	}
	out = b.run(0, "test", append(flags, "//...")...)
	summary = processSummary(t, out)
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

	// A failing test fails, and is executed again the next time: a failed
	// result is never cached. Its log says something new on every run.
	var logs []string
	for i := range 2 {
		out = b.run(3, "test", append(flags, "//:fail_test")...) // 3: tests failed
		if !regexp.MustCompile(`(?m)^//:fail_test\s+FAILED`).MatchString(out) {
			t.Errorf("run %d of //:fail_test: not reported as FAILED\n%s", i+1, out)
		}
		summary = processSummary(t, out)
		t.Logf("run %d of //:fail_test: %v", i+1, summary)
		// The test, and Bazel's test.xml generation from its log.
		if summary["remote"] != 2 || !onlyKinds(summary, "remote", "internal") {
			t.Errorf("run %d of //:fail_test: process summary %v, want the test and its test.xml generated remotely, nothing cached\n%s", i+1, summary, out)
		}
		log, err := os.ReadFile(filepath.Join(b.ws, "bazel-testlogs", "fail_test", "test.log"))
		if err != nil || !strings.Contains(string(log), "fail_test runs and fails: run ") {
			t.Fatalf("run %d of //:fail_test: test.log %q (%v), want the test's output", i+1, log, err)
		}
		logs = append(logs, string(log))
	}
	if logs[0] == logs[1] {
		t.Errorf("the second run of //:fail_test has the first run's log, so it was not executed again:\n%s", logs[1])
	}

	b.shutdown()
	f.shutdown()
}

// TestBazelWorkerKilled: the worker running a Bazel action is killed with
// SIGKILL, and the build still succeeds: the scheduler requeues the action
// to another worker. The roles run as separate processes (storage,
// scheduler, runner, workers), and Bazel talks to the scheduler alone.
func TestBazelWorkerKilled(t *testing.T) {
	needPaddock(t)
	bazel, err := exec.LookPath("bazel")
	if err != nil {
		t.Skip("bazel is not on PATH; install Debian's bazel-bootstrap (Bazel 4.2.3) to run the Bazel end-to-end test")
	}
	if testing.Short() {
		t.Skip("Bazel builds take a minute; skipped in -short mode")
	}
	dir := searchableTempDir(t)
	rs := startRoles(t, dir, filepath.Join(dir, "worker"))
	rs.startWorker("w1")
	g := newGate(t)
	b := newBazel(t, bazel)
	flags := append(b.remoteFlags(rs.schedAddr), "--action_env=GATE_PORT="+strconv.Itoa(g.lis.Addr().(*net.TCPAddr).Port), "//:gated")

	type bazelResult struct {
		out  string
		code int
		err  error
	}
	done := make(chan bazelResult, 1)
	go func() {
		out, code, err := b.exec("build", flags...)
		done <- bazelResult{out, code, err}
	}()
	var first net.Conn
	select {
	case c := <-g.conns:
		first = c
		g.started(first, faultLimit)
	case r := <-done:
		t.Fatalf("bazel build ended before the action ran: exit %d, %v\n%s", r.code, r.err, r.out)
	case <-time.After(bazelCommandTimeout):
		t.Fatal("the gated action did not start")
	}
	rs.worker.kill()
	checkKilled(t, first, faultLimit)
	rs.startWorker("w2")
	second := g.attempt(faultLimit)
	second.Write([]byte("go\n"))
	second.Close()

	r := <-done
	if r.err != nil || r.code != 0 {
		t.Fatalf("bazel build with its worker killed: exit code %d, %v\n%s", r.code, r.err, r.out)
	}
	summary := processSummary(t, r.out)
	t.Logf("build with its worker killed: %v", summary)
	if summary["remote"] != 1 || !onlyKinds(summary, "remote", "internal") {
		t.Errorf("process summary %v, want the one action executed remotely\n%s", summary, r.out)
	}
	b.checkOutputs(map[string]string{"bazel-bin/gated.txt": "go\n"})
	b.shutdown()
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

// bazel runs Bazel commands in a copy of testdata/ws with a private output
// user root, so nothing depends on (or lands in) ~/.cache/bazel.
type bazel struct {
	t                 *testing.T
	bin, ws, userRoot string
	stubs             string
	shutdownOnce      bool
}

func newBazel(t *testing.T, bin string) *bazel {
	ws := filepath.Join(t.TempDir(), "ws")
	if err := os.CopyFS(ws, os.DirFS("testdata/ws")); err != nil {
		t.Fatal(err)
	}
	stubs, err := filepath.Abs("testdata/stubs")
	if err != nil {
		t.Fatal(err)
	}
	b := &bazel{t: t, bin: bin, ws: ws, userRoot: filepath.Join(t.TempDir(), "bazel-root"), stubs: stubs}
	t.Cleanup(b.shutdown)
	return b
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

// bazelCommandTimeout bounds one Bazel command, so that a hung client fails
// the test instead of the whole run; it is not an assertion on speed.
const bazelCommandTimeout = 4 * time.Minute

func (b *bazel) command(ctx context.Context, args ...string) *exec.Cmd {
	startup := []string{
		"--output_user_root=" + b.userRoot,
		// Keep the system bazelrc: Debian's sets the install base
		// (/usr/share/bazel) there. A user's ~/.bazelrc stays out.
		"--nohome_rc", "--noworkspace_rc",
		// If the test dies before its cleanup, the server still goes away.
		"--max_idle_secs=300",
	}
	cmd := exec.CommandContext(ctx, b.bin, append(startup, args...)...)
	cmd.Dir = b.ws
	// The Bazel server outlives the client; never wait on pipes it holds.
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// run runs one Bazel command, fails the test unless it exits with
// wantExit, and returns its combined output.
func (b *bazel) run(wantExit int, command string, flags ...string) string {
	b.t.Helper()
	out, code, err := b.exec(command, flags...)
	if err != nil {
		b.t.Fatalf("bazel %s %s: %v\n%s", command, strings.Join(flags, " "), err, out)
	}
	if code != wantExit {
		b.t.Fatalf("bazel %s %s: exit code %d, want %d\n%s", command, strings.Join(flags, " "), code, wantExit, out)
	}
	return out
}

// exec runs one Bazel command and returns its combined output and exit
// code; err is for failures to run it at all. Safe to call from any
// goroutine.
func (b *bazel) exec(command string, flags ...string) (string, int, error) {
	ctx, cancel := context.WithTimeout(b.t.Context(), bazelCommandTimeout)
	defer cancel()
	out, err := b.command(ctx, append([]string{command}, flags...)...).CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode(), nil
	}
	return string(out), 0, err
}

// checkOutputs reads each file (relative to the workspace) and checks that
// it contains the wanted text; it returns what it read.
func (b *bazel) checkOutputs(want map[string]string) map[string]string {
	b.t.Helper()
	got := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		data, err := os.ReadFile(filepath.Join(b.ws, name))
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

// shutdown stops the Bazel server and makes the output user root
// removable (Bazel leaves read-only files and directories in it).
func (b *bazel) shutdown() {
	if b.shutdownOnce {
		return
	}
	b.shutdownOnce = true
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := b.command(ctx, "shutdown").CombinedOutput(); err != nil {
		b.t.Errorf("bazel shutdown: %v\n%s", err, out)
	}
	_ = filepath.WalkDir(b.userRoot, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(path, 0o755)
		}
		return nil
	})
}

// processSummaryRE matches Bazel's line "INFO: 4 processes: 3 remote, 1
// internal." (Bazel 4.x; "1 process: ..." when there is one).
var processSummaryRE = regexp.MustCompile(`(?m)^INFO: (\d+) process(?:es)?: (.*)\.$`)

// processSummary parses the process summary line into counts by kind, and
// checks they add up to the total.
func processSummary(t *testing.T, out string) map[string]int {
	t.Helper()
	m := processSummaryRE.FindAllStringSubmatch(out, -1)
	if len(m) != 1 {
		t.Fatalf("found %d process summary lines in Bazel's output, want 1:\n%s", len(m), out)
	}
	total, _ := strconv.Atoi(m[0][1])
	counts := map[string]int{}
	sum := 0
	for _, part := range strings.Split(m[0][2], ", ") {
		n, kind, ok := strings.Cut(part, " ")
		count, err := strconv.Atoi(n)
		if !ok || err != nil {
			t.Fatalf("cannot parse %q in process summary %q", part, m[0][0])
		}
		counts[kind] += count
		sum += count
	}
	if sum != total {
		t.Fatalf("process summary %q: kinds add up to %d, not %d", m[0][0], sum, total)
	}
	return counts
}
