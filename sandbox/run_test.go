package sandbox

import (
	"strings"
	"testing"
)

// TestRunExitCodeAndOutput: a non-zero exit is a result, with stdout and
// stderr captured, both with an image-like rootfs and with the host's "/".
func TestRunExitCodeAndOutput(t *testing.T) {
	l := newTestLauncher(t, Options{})
	for _, tc := range []struct {
		name, rootfs, probe string
	}{
		{"image rootfs", testRootfs, "/bin/probe"},
		{"host root", "/", probeHostPath},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := DefaultSpec(tc.rootfs, testIDBase, tc.probe, "exit", "3")
			out := runSpec(t, l, spec, Request{})
			if out.ExitCode != 3 || out.Signal != 0 {
				t.Errorf("exit = %d signal %v, want 3, 0 (stderr %q)", out.ExitCode, out.Signal, out.stderr)
			}
			if strings.TrimSpace(out.stdout) != "to stdout" || strings.TrimSpace(out.stderr) != "to stderr" {
				t.Errorf("stdout %q stderr %q", out.stdout, out.stderr)
			}
			if out.Stdout.Bytes != int64(len("to stdout\n")) || out.Stdout.Truncated {
				t.Errorf("stdout stats %+v", out.Stdout)
			}
			if out.Usage.UserTime+out.Usage.SystemTime <= 0 || out.Usage.MaxRSSBytes <= 0 {
				t.Errorf("usage not reported: %+v", out.Usage)
			}
			if out.Cgroup.MemoryPeakBytes == 0 || out.Cgroup.CPUTime == 0 {
				t.Errorf("cgroup figures not reported: %+v", out.Cgroup)
			}
		})
	}
}
