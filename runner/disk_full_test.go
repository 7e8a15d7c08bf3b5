package runner

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/internal/testdisk"
	"github.com/paddock-build/paddock/internal/testlog"
	"github.com/paddock-build/paddock/sandbox"
)

// runDirect calls Run on the service itself, with the log captured.
func runDirect(t *testing.T, e *testEnv, a *action, log *testlog.Buffer) (codes.Code, string) {
	t.Helper()
	e.svc.logger = slog.New(slog.NewTextHandler(log, nil))
	resp, err := e.svc.Run(context.Background(), a.request("/bin/sh", "-c", "echo ran"))
	if err != nil {
		t.Fatal(err)
	}
	return codes.Code(resp.StatusCode), resp.StatusMessage
}

// When the disk under the runner's state and the worker's build
// directories is full, setting up a sandbox fails with RESOURCE_EXHAUSTED
// saying the worker's disk is full and at which step, never INTERNAL
// (which clients do not retry) and never with a host path (which the log
// gets); once there is room again, actions run. Both steps are met for
// real: the host view's skeleton (made in the runner) and the output
// files (made by the sandbox's spawner, across its pipe).
func TestFullDiskIsResourceExhausted(t *testing.T) {
	disk := testdisk.MountAt(t, filepath.Join(searchableTempDir(t), "disk"), 16<<20, 512)
	e := newTestEnvIn(t, disk, nil)
	for _, step := range []string{"setting up the sandbox's host view", "setting up the sandbox"} {
		a := e.newAction(t) // its directories, before the disk fills
		free := testdisk.FillInodes(t, disk)
		var log testlog.Buffer
		code, msg := runDirect(t, e, a, &log)
		if code != codes.ResourceExhausted || msg != diskFullMessage(step) {
			t.Errorf("on a full disk: %v %q, want RESOURCE_EXHAUSTED %q", code, msg, diskFullMessage(step))
		}
		if !strings.Contains(log.String(), disk) || !strings.Contains(log.String(), "no space left on device") {
			t.Errorf("the log does not say which path was full:\n%s", log.String())
		}
		free()
		mustSucceed(t, a, e.run(t, a.request("/bin/sh", "-c", "echo ran")))
		if out, _ := a.output(t); out != "ran\n" {
			t.Errorf("after freeing the disk: stdout %q", out)
		}
	}
}

// Each way a full disk (ENOSPC, or EDQUOT for a quota) reaches the
// service edge maps to RESOURCE_EXHAUSTED without the host path, by the
// errno alone: from the launcher (after the spawner's pipe, the errno is
// all that is left of the chain) and from an image's unpacking.
func TestFullDiskErrorsNameNoPath(t *testing.T) {
	const secret = "/var/lib/secret-layout"
	perr := func(errno syscall.Errno) error { return &fs.PathError{Op: "open", Path: secret + "/x", Err: errno} }
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"launcher ENOSPC", sandboxError(fmt.Errorf("%w: open output %s/stderr: %w", sandbox.ErrSetup, secret, syscall.ENOSPC)), "the worker's disk is full: setting up the sandbox"},
		{"launcher EDQUOT", sandboxError(fmt.Errorf("write bundle config: %w", perr(syscall.EDQUOT))), "the worker's disk is full: setting up the sandbox"},
		{"image unpack", pullFailure("img", fmt.Errorf("unpack layer: %w", perr(syscall.ENOSPC))), "image img: the worker's disk is full: pulling the image"},
		{"a full disk that is not", sandboxError(fmt.Errorf("%w: %s: %w", sandbox.ErrSetup, secret, syscall.ENOENT)), ""},
	} {
		st := status.Convert(tc.err)
		if tc.want == "" {
			if st.Code() == codes.ResourceExhausted {
				t.Errorf("%s: %v %q, want no RESOURCE_EXHAUSTED", tc.name, st.Code(), st.Message())
			}
			continue
		}
		if st.Code() != codes.ResourceExhausted || st.Message() != tc.want {
			t.Errorf("%s: %v %q, want RESOURCE_EXHAUSTED %q", tc.name, st.Code(), st.Message(), tc.want)
		}
	}
}
