package runner

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/sandbox"
)

// TestSandboxErrorKeepsItsCause: a sandbox error becomes a gRPC status
// with the right code, and still tells a vanished bind source (which Run
// retries with a fresh host-view plan) from any other set-up failure, by
// type rather than by its message.
func TestSandboxErrorKeepsItsCause(t *testing.T) {
	for _, tc := range []struct {
		err      error
		code     codes.Code
		vanished bool
	}{
		{fmt.Errorf("%w: %w: rootfs: mount /usr: gone", sandbox.ErrSetup, sandbox.ErrMountSourceMissing), codes.Internal, true},
		{fmt.Errorf("%w: rootfs: /proc is a symlink", sandbox.ErrSetup), codes.Internal, false},
		// The old test by message no longer decides.
		{fmt.Errorf("%w: open mount source /x: no such file or directory", sandbox.ErrSetup), codes.Internal, false},
		{fmt.Errorf("%w: start x: no such file", sandbox.ErrCommandNotStarted), codes.InvalidArgument, false},
		{sandbox.ErrSpawnerGone, codes.Unavailable, false},
	} {
		err := sandboxError(tc.err)
		st := status.Convert(err)
		if st.Code() != tc.code || !strings.Contains(st.Message(), tc.err.Error()) {
			t.Errorf("%v: status %v %q", tc.err, st.Code(), st.Message())
		}
		if got := vanishedMountSource(err); got != tc.vanished {
			t.Errorf("%v: vanished source %v, want %v", tc.err, got, tc.vanished)
		}
	}
}
