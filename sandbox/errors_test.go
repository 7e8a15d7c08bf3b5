package sandbox

import (
	"errors"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Run's errors say what failed, across the spawner's process boundary: a
// command that cannot start is not a broken sandbox.
func TestRunErrorsAreTyped(t *testing.T) {
	l := newTestLauncher(t, Options{})
	_, err := tryRunSpec(t, l, testSpec("/no/such/command"), Request{})
	if !errors.Is(err, ErrCommandNotStarted) || errors.Is(err, ErrSetup) {
		t.Fatalf("missing command: %v, want ErrCommandNotStarted only", err)
	}
	spec := testSpec("/bin/probe", "exit", "0")
	spec.Mounts = append(spec.Mounts, specs.Mount{Destination: "/mnt/x", Type: "bind", Source: "/no/such/source", Options: []string{"bind"}})
	_, err = tryRunSpec(t, l, spec, Request{})
	if !errors.Is(err, ErrSetup) || !errors.Is(err, ErrMountSourceMissing) || errors.Is(err, ErrCommandNotStarted) {
		t.Fatalf("missing bind source: %v, want ErrSetup and ErrMountSourceMissing", err)
	}
	// Any other set-up failure is ErrSetup alone: here a mount
	// destination that passes through a symlink.
	spec = testSpec("/bin/probe", "exit", "0")
	spec.Mounts = append(spec.Mounts, specs.Mount{Destination: "/bin/sh/x", Type: "tmpfs", Source: "tmpfs"})
	_, err = tryRunSpec(t, l, spec, Request{})
	if !errors.Is(err, ErrSetup) || errors.Is(err, ErrMountSourceMissing) {
		t.Fatalf("mount through a symlink: %v, want ErrSetup only", err)
	}
	runsNormally(t, l)
}
