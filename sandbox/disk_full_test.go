package sandbox

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/paddock-build/paddock/internal/testdisk"
)

// A full disk where the output files go fails the run with an error that
// still wraps ENOSPC after crossing the spawner's process boundary (as it
// does in process), so that the runner can tell its client the disk is
// full, a condition worth retrying, rather than an internal error; and
// the launcher runs the next sandbox once there is room again.
func TestFullDiskErrorCrossesTheSpawner(t *testing.T) {
	l := newTestLauncher(t, Options{})
	dir := testdisk.Mount(t, 16<<20, 256)
	free := testdisk.FillInodes(t, dir)
	req := Request{Bundle: writeBundle(t, testSpec("/bin/probe", "exit", "0")),
		Stdout: filepath.Join(dir, "stdout"), Stderr: filepath.Join(dir, "stderr")}
	_, err := l.Run(context.Background(), req)
	if !errors.Is(err, ErrSetup) || !errors.Is(err, syscall.ENOSPC) || errors.Is(err, ErrMountSourceMissing) {
		t.Fatalf("output on a full disk: %v, want ErrSetup wrapping ENOSPC", err)
	}
	free()
	if res, err := l.Run(context.Background(), req); err != nil || res.ExitCode != 0 {
		t.Fatalf("after freeing the disk: %v, %v", res, err)
	}
	if b, err := os.ReadFile(req.Stdout); err != nil || len(b) == 0 {
		t.Errorf("stdout after freeing the disk: %q, %v", b, err)
	}
	runsNormally(t, l)
}

// kindError restores the errno beside the kind's sentinels, and alone.
func TestKindErrorKeepsTheErrno(t *testing.T) {
	for _, tc := range []struct {
		kind  errorKind
		errno syscall.Errno
		is    []error
		isNot []error
	}{
		{kindSetup, syscall.EDQUOT, []error{ErrSetup, syscall.EDQUOT}, []error{syscall.ENOSPC, ErrMountSourceMissing}},
		{kindNone, syscall.ENOSPC, []error{syscall.ENOSPC}, []error{ErrSetup}},
		{kindMountSource, 0, []error{ErrSetup, ErrMountSourceMissing}, []error{syscall.ENOENT}},
	} {
		err := kindError(tc.kind, tc.errno, "the message")
		if err.Error() != "the message" {
			t.Errorf("kind %d errno %v: message %q", tc.kind, tc.errno, err)
		}
		for _, s := range tc.is {
			if !errors.Is(err, s) {
				t.Errorf("kind %d errno %v: not %v", tc.kind, tc.errno, s)
			}
		}
		for _, s := range tc.isNot {
			if errors.Is(err, s) {
				t.Errorf("kind %d errno %v: is %v", tc.kind, tc.errno, s)
			}
		}
	}
}
