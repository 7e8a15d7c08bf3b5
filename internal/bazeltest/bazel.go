// Package bazeltest runs a real Bazel client (Debian's bazel-bootstrap,
// Bazel 4.2.3, or a release binary such as Bazel 2.1.0 from npm) in a copy
// of a test workspace, for the end-to-end tests of storage and of the
// whole farm. Each Bazel gets a private output user root,
// so nothing depends on, or lands in, ~/.cache/bazel, and its server is shut
// down when the test ends.
package bazeltest

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// CommandTimeout bounds one Bazel command, so that a hung client fails the
// test instead of the whole run; it is not an assertion on speed.
const CommandTimeout = 4 * time.Minute

// Bazel runs Bazel commands in one workspace.
type Bazel struct {
	t        *testing.T
	bin      string
	userRoot string
	noSysRC  bool
	// WS is the workspace directory (a copy of the one given to New).
	WS string
	// Prefix, if set, runs every Bazel command through it: a command and
	// its arguments, such as nsenter into a network namespace (the Bazel
	// server the first command starts inherits it).
	Prefix []string
	done   bool
	// startup are extra startup options (UseTLS).
	startup []string
}

// New copies workspace into a temporary directory and returns a Bazel for
// it. It skips the test when bazel is not installed, or with -short (Bazel
// takes tens of seconds to start).
func New(t *testing.T, workspace string) *Bazel {
	t.Helper()
	bin, err := exec.LookPath("bazel")
	if err != nil {
		t.Skip("bazel is not on PATH; install Debian's bazel-bootstrap (Bazel 4.2.3) to run this end-to-end test")
	}
	return newBazel(t, workspace, bin, false)
}

// NewRelease is New for a Bazel release binary at bin (such as Bazel 2.1.0
// from npm's @bazel/bazel-linux_x64), which skips the system bazelrc: that
// file belongs to the system's Bazel, and may hold flags an older release
// does not know. It skips the test when bin does not exist.
func NewRelease(t *testing.T, workspace, bin string) *Bazel {
	t.Helper()
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("%v; scripts/install-test-deps.sh (run by make test as root) installs it", err)
	}
	return newBazel(t, workspace, bin, true)
}

// Bazel210 is where scripts/install-test-deps.sh installs Bazel 2.1.0 (npm's
// @bazel/bazel-linux_x64@2.1.0), the oldest Bazel the end-to-end tests
// run; PADDOCK_BAZEL_2_1_0 overrides it.
func Bazel210() string {
	if p := os.Getenv("PADDOCK_BAZEL_2_1_0"); p != "" {
		return p
	}
	return "/opt/paddock-test/bazel-2.1.0/node_modules/@bazel/bazel-linux_x64/bazel-2.1.0-linux-x86_64"
}

func newBazel(t *testing.T, workspace, bin string, noSysRC bool) *Bazel {
	t.Helper()
	if testing.Short() {
		t.Skip("starting Bazel takes tens of seconds; skipped in -short mode")
	}
	ws := filepath.Join(t.TempDir(), "ws")
	if err := os.CopyFS(ws, os.DirFS(workspace)); err != nil {
		t.Fatal(err)
	}
	b := &Bazel{t: t, bin: bin, WS: ws, userRoot: filepath.Join(t.TempDir(), "bazel-root"), noSysRC: noSysRC}
	t.Cleanup(b.Shutdown)
	return b
}

// Command returns the command for one Bazel invocation in the workspace.
func (b *Bazel) Command(ctx context.Context, args ...string) *exec.Cmd {
	startup := []string{
		"--output_user_root=" + b.userRoot,
		// Keep the system bazelrc: Debian's sets the install base
		// (/usr/share/bazel) there. A user's ~/.bazelrc stays out.
		"--nohome_rc", "--noworkspace_rc",
		// If the test dies before its cleanup, the server still goes away.
		"--max_idle_secs=300",
	}
	startup = append(startup, b.startup...)
	if b.noSysRC {
		startup = append(startup, "--nosystem_rc")
	}
	argv := append(append(append([]string(nil), b.Prefix...), b.bin), append(startup, args...)...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = b.WS
	// The Bazel server outlives the client; never wait on pipes it holds.
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// Exec runs one Bazel command and returns its combined output and exit
// code; err is for failures to run it at all. Safe from any goroutine.
func (b *Bazel) Exec(command string, flags ...string) (string, int, error) {
	ctx, cancel := context.WithTimeout(b.t.Context(), CommandTimeout)
	defer cancel()
	out, err := b.Command(ctx, append([]string{command}, flags...)...).CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode(), nil
	}
	return string(out), 0, err
}

// Run runs one Bazel command, fails the test unless it exits with
// wantExit, and returns its combined output.
func (b *Bazel) Run(wantExit int, command string, flags ...string) string {
	b.t.Helper()
	out, code, err := b.Exec(command, flags...)
	if err != nil {
		b.t.Fatalf("bazel %s %s: %v\n%s", command, strings.Join(flags, " "), err, out)
	}
	if code != wantExit {
		b.t.Fatalf("bazel %s %s: exit code %d, want %d\n%s", command, strings.Join(flags, " "), code, wantExit, out)
	}
	return out
}

// Shutdown stops the Bazel server and makes the output user root
// removable (Bazel leaves read-only files and directories in it). It runs
// at the end of the test anyway; calling it earlier is fine.
func (b *Bazel) Shutdown() {
	if b.done {
		return
	}
	b.done = true
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := b.Command(ctx, "shutdown").CombinedOutput(); err != nil {
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

// ProcessSummary parses Bazel's process summary line into counts by kind
// ("remote", "remote cache hit", "local", "internal", …), and checks that
// they add up to the total.
func ProcessSummary(t *testing.T, out string) map[string]int {
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
