package runner

import (
	"errors"
	"os"
	"path"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/api/runnerpb"
)

// checkRequest validates what the worker sends besides the platform.
func checkRequest(req *runnerpb.RunRequest) error {
	if req.GetActionId() == "" {
		return status.Error(codes.InvalidArgument, "action_id is empty")
	}
	ir := req.GetInputRoot()
	if !path.IsAbs(ir) || path.Clean(ir) != ir {
		return status.Errorf(codes.InvalidArgument, "input_root %q: want a clean absolute path", ir)
	}
	st, err := os.Lstat(ir)
	if err != nil || !st.IsDir() {
		return status.Errorf(codes.InvalidArgument, "input_root %q is not a directory", ir)
	}
	for _, p := range []string{req.GetStdoutPath(), req.GetStderrPath()} {
		if p != "" && (!path.IsAbs(p) || path.Clean(p) != p) {
			return status.Errorf(codes.InvalidArgument, "output path %q: want a clean absolute path", p)
		}
	}
	return checkActionDir(req)
}

// checkActionDir checks that the action directory, when there is one,
// holds the input root and the output files directly: the runner gives it
// to the sandbox user, so it must be the action's own and nothing wider.
func checkActionDir(req *runnerpb.RunRequest) error {
	dir := req.GetActionDir()
	if dir == "" {
		return nil
	}
	if !path.IsAbs(dir) || path.Clean(dir) != dir || dir == "/" {
		return status.Errorf(codes.InvalidArgument, "action_dir %q: want a clean absolute path", dir)
	}
	for _, p := range []string{req.GetInputRoot(), req.GetStdoutPath(), req.GetStderrPath()} {
		if p != "" && path.Dir(p) != dir {
			return status.Errorf(codes.InvalidArgument, "action_dir %q: %q is not directly in it", dir, p)
		}
	}
	if st, err := os.Lstat(dir); err != nil || !st.IsDir() {
		return status.Errorf(codes.InvalidArgument, "action_dir %q is not a directory", dir)
	}
	return nil
}

// checkWorkingDirectory checks that wd is a directory inside the input
// root, following its symlinks only while they stay beneath it. The
// sandbox's chdir follows them without the root's clamp, so a symlink
// t -> ../tmp, which RESOLVE_IN_ROOT took as the root's own tmp, ran the
// command in the sandbox's /tmp with its outputs silently lost.
func checkWorkingDirectory(inputRoot, wd string) error {
	if err := checkRelativePath(wd); err != nil {
		return status.Errorf(codes.InvalidArgument, "working directory %q: %v", wd, err)
	}
	if wd == "" {
		return nil
	}
	root, err := unix.Open(inputRoot, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "input root: %v", err)
	}
	defer unix.Close(root)
	fd, err := unix.Openat2(root, wd, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
	})
	if errors.Is(err, unix.EXDEV) {
		// The kernel's own text, "invalid cross-device link", says
		// nothing of the cause.
		return status.Errorf(codes.InvalidArgument, "working directory %q is not a directory in the input root: a symlink on its way leads out of the input root", wd)
	}
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "working directory %q is not a directory in the input root: %v", wd, err)
	}
	unix.Close(fd)
	return nil
}
