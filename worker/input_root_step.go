package worker

import (
	"context"
	"errors"
	"path"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/internal/clock"
	"github.com/paddock-build/paddock/rev2"
)

// inputRootStep materialises the action's input root in j.Root, creates
// the parents of its outputs and its working directory, and opens j.RootFd
// for the steps inside.
type inputRootStep struct {
	next  Executor
	roots *inputRootBuilder
	clock clock.Clock
}

func (s *inputRootStep) Execute(ctx context.Context, j *Job) (*repb.ExecuteResponse, error) {
	j.Metadata.InputFetchStartTimestamp = stamp(s.clock)
	if _, err := s.roots.build(ctx, j.Fn, j.InputRoot, j.Root); err != nil {
		return nil, err
	}
	rootFd, err := unix.Open(j.Root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "open input root: %v", err)
	}
	defer unix.Close(rootFd)
	j.RootFd = rootFd
	if err := createOutputParents(rootFd, j.Command); err != nil {
		return nil, err
	}
	j.Metadata.InputFetchCompletedTimestamp = stamp(s.clock)
	return s.next.Execute(ctx, j)
}

// createOutputParents creates the parent directories of every declared
// output (REv2 2.0 clients rely on it), and the working directory, one
// component at a time with mkdirat/openat(O_NOFOLLOW): a symlink in the
// input root (say link -> ../../../../etc) stops the walk instead of
// being followed, so nothing is created outside the input root.
func createOutputParents(rootFd int, cmd *repb.Command) error {
	dirs := []string{}
	if cmd.WorkingDirectory != "" {
		dirs = append(dirs, cmd.WorkingDirectory)
	}
	for _, p := range rev2.OutputPaths(cmd) {
		if parent := path.Dir(p); parent != "." {
			dirs = append(dirs, parent)
		}
	}
	for _, d := range dirs {
		if err := mkdirAllBeneath(rootFd, d); err != nil {
			if isDiskFull(err) {
				return status.Errorf(codes.ResourceExhausted, "create output directory %s: the worker's disk is full", rev2.Quote(d))
			}
			return status.Errorf(codes.Internal, "create output directory %s: %v", rev2.Quote(d), err)
		}
	}
	return nil
}

func mkdirAllBeneath(rootFd int, rel string) error {
	fd, err := unix.Dup(rootFd)
	if err != nil {
		return err
	}
	for _, c := range strings.Split(rel, "/") {
		err := unix.Mkdirat(fd, c, 0o755)
		if err != nil && !errors.Is(err, unix.EEXIST) {
			unix.Close(fd)
			return err
		}
		next, err := unix.Openat(fd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			// A symlink or a file is in the way: leave it to the action.
			return nil
		}
		if err != nil {
			return err
		}
		fd = next
	}
	return unix.Close(fd)
}
