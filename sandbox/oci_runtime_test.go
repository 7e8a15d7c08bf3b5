package sandbox

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/paddock-build/paddock/sandbox/internal/probe/report"
)

// TestOCIRuntimeRunc runs the same bundles with the external runc backend:
// exit codes, output capture with its cap, and timeouts behave as with the
// native launcher. (Debian 12's crun refuses this host's hybrid cgroup
// layout, so it is not exercised here.)
func TestOCIRuntimeRunc(t *testing.T) {
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Skip("runc not installed")
	}
	l := newTestLauncher(t, Options{Runtime: runc, RuntimeRoot: t.TempDir(), KillGrace: 500 * time.Millisecond})
	t.Run("exit code and output", func(t *testing.T) {
		out := runSpec(t, l, testSpec("/bin/probe", "exit", "3"), Request{})
		if out.ExitCode != 3 || strings.TrimSpace(out.stdout) != "to stdout" || strings.TrimSpace(out.stderr) != "to stderr" {
			t.Errorf("exit %d stdout %q stderr %q", out.ExitCode, out.stdout, out.stderr)
		}
	})
	t.Run("posture", func(t *testing.T) {
		out := runSpec(t, l, testSpec("/bin/probe", "posture"), Request{})
		var p report.Posture
		decodeJSON(t, out, &p)
		if f := strings.Fields(p.UIDMap); len(f) != 3 || f[1] == "0" || p.Status["NoNewPrivs"] != "1" {
			t.Errorf("uid_map %q NoNewPrivs %q", p.UIDMap, p.Status["NoNewPrivs"])
		}
	})
	t.Run("output cap", func(t *testing.T) {
		out := runSpec(t, l, testSpec("/bin/probe", "write", "100000"), Request{OutputLimit: 10})
		if !out.Stdout.Truncated || len(out.stdout) != 10 {
			t.Errorf("stdout %+v, %d bytes in file", out.Stdout, len(out.stdout))
		}
	})
	t.Run("spec in memory", func(t *testing.T) {
		dir := t.TempDir()
		spec := testSpec("/bin/probe", "exit", "4")
		res, err := l.Run(t.Context(), Request{Bundle: dir, Spec: spec})
		if err != nil || res.ExitCode != 4 {
			t.Fatalf("Run: %+v, %v", res, err)
		}
		if _, err := os.Stat(filepath.Join(dir, "config.json")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("config.json written for the run was left behind: %v", err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		// The timeout runs from the hand-over to runc, not from the
		// command's start: under load runc took more than 300 ms to exec
		// it, and its init, pid 1 with no handler, ignored the SIGTERM, so
		// the run ended by SIGKILL after the grace. Two seconds leave the
		// command started before the timeout.
		out := runSpec(t, l, testSpec("/bin/probe", "spin"), Request{Timeout: 2 * time.Second})
		// Under runc the command is pid 1: a Go program dies of SIGTERM
		// by exiting 2 there, since pid 1 cannot be killed by its own
		// re-raised signal.
		if !out.TimedOut || (out.Signal != syscall.SIGTERM && out.ExitCode != 2) {
			t.Errorf("timed out %v signal %v exit %d", out.TimedOut, out.Signal, out.ExitCode)
		}
	})
	if ps := sandboxProcesses(t); len(ps) != 0 {
		t.Errorf("sandbox processes left: %q", ps)
	}
}
