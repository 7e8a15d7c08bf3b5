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
	if err := createOutputParents(ctx, rootFd, j.Command, s.roots.pool); err != nil {
		return nil, err
	}
	j.Metadata.InputFetchCompletedTimestamp = stamp(s.clock)
	return s.next.Execute(ctx, j)
}

// createOutputParents creates the parent directories of every declared
// output (REv2 2.0 clients rely on it), and the working directory, each
// with one mkdirat and an openat(O_NOFOLLOW) from its parent's descriptor:
// a symlink in the input root (say link -> ../../../../etc) stops the walk
// below it instead of being followed, so nothing is created outside the
// input root, and a symlink or a file in the way is left to the action.
//
// What it creates is rev2.OutputDirs, so the bounds Execute enforces
// (MaxOutputDirs directories, MaxOutputPathLevels deep) bound it too: at
// most that many directories, and one descriptor a level held open. It
// stops when ctx is cancelled. Its errors name directories relative to the
// input root and give only the errno, never the build directory's host
// path. Directories come from pool first.
func createOutputParents(ctx context.Context, rootFd int, cmd *repb.Command, pool *dirPool) error {
	dirs, err := rev2.OutputDirs(cmd)
	if err != nil {
		return err
	}
	// open holds the directories made on the way to the current one, each
	// below the one before it; dirs come parents first, each subtree
	// together, so a directory's parent is on it when its turn comes,
	// unless the parent was not made.
	type openDir struct {
		rel string
		fd  int
	}
	var open []openDir
	defer func() {
		for _, o := range open {
			unix.Close(o.fd)
		}
	}()
	for _, d := range dirs {
		if err := ctx.Err(); err != nil {
			return status.FromContextError(err).Err()
		}
		for len(open) > 0 && !strings.HasPrefix(d, open[len(open)-1].rel+"/") {
			unix.Close(open[len(open)-1].fd)
			open = open[:len(open)-1]
		}
		parentFd := rootFd
		if parent := path.Dir(d); parent != "." {
			if len(open) == 0 || open[len(open)-1].rel != parent {
				continue // a symlink or a file was in the way above d
			}
			parentFd = open[len(open)-1].fd
		}
		fd, err := mkdirBeneath(parentFd, path.Base(d), pool)
		if err != nil {
			if isDiskFull(err) {
				return status.Errorf(codes.ResourceExhausted, "create output directory %s: the worker's disk is full", rev2.Quote(d))
			}
			return status.Errorf(codes.Internal, "create output directory %s: %v", rev2.Quote(d), errnoOnly(err))
		}
		if fd >= 0 {
			open = append(open, openDir{d, fd})
		}
	}
	return nil
}

// mkdirBeneath makes directory name in parentFd unless it is there, and
// opens it without following a symlink. It returns -1 and no error when a
// symlink or a file is in the way.
func mkdirBeneath(parentFd int, name string, pool *dirPool) (int, error) {
	if err := pool.mkdirat(parentFd, name); err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, err
	}
	fd, err := unix.Openat(parentFd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		return -1, nil
	}
	return fd, err
}

// errnoOnly is err's errno, whose text names no path; or a fixed text.
func errnoOnly(err error) error {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return errors.New("cannot create it")
}
