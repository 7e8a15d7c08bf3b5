package worker

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]`)

// buildDirStep gives the action a build directory under base, named after
// its operation and attempt, and releases it (removed, or emptied and kept
// as a spare: buildDirs) when the steps inside are done.
type buildDirStep struct {
	next Executor
	base string
	dirs *buildDirs
}

func (s *buildDirStep) Execute(ctx context.Context, j *Job) (*repb.ExecuteResponse, error) {
	name := unsafeChars.ReplaceAllString(j.Assignment.OperationName, "_")
	// No new input root while the trash is far behind: removal is
	// slower than making, and the disk would fill past every quota.
	if err := s.dirs.trash.wait(ctx); err != nil {
		return nil, status.FromContextError(err).Err()
	}
	j.Dir = filepath.Join(s.base, fmt.Sprintf("%s-%d", name[max(0, len(name)-64):], j.Assignment.Attempt))
	defer func() { s.dirs.done(j.Dir, j.Ran) }()
	root, err := s.dirs.make(j.Dir)
	if err != nil {
		if isDiskFull(err) {
			return nil, status.Error(codes.ResourceExhausted, "the worker's disk is full: no room for the action's build directory")
		}
		return nil, status.Errorf(codes.Internal, "create build directory: %v", err)
	}
	j.Root = root
	return s.next.Execute(ctx, j)
}
