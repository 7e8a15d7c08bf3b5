package worker

import (
	"context"
	"path/filepath"
	"strconv"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// dirName is the last 64 bytes of an operation's name, with every byte
// but letters, digits, '.', '_' and '-' made '_': a name for the build
// directory that no client's operation name can turn into a path. A byte
// loop, not a regexp: it runs once per action.
func dirName(op string) string {
	op = op[max(0, len(op)-64):]
	b := []byte(op)
	for i, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	return string(b)
}

// buildDirStep gives the action a build directory under base, named after
// its operation and attempt, and releases it (removed, or emptied and kept
// as a spare: buildDirs) when the steps inside are done.
type buildDirStep struct {
	next Executor
	base string
	dirs *buildDirs
}

func (s *buildDirStep) Execute(ctx context.Context, j *Job) (*repb.ExecuteResponse, error) {
	// No new input root while the trash is far behind: removal is
	// slower than making, and the disk would fill past every quota.
	if err := s.dirs.trash.wait(ctx); err != nil {
		return nil, status.FromContextError(err).Err()
	}
	j.Dir = filepath.Join(s.base, dirName(j.Assignment.OperationName)+"-"+strconv.Itoa(int(j.Assignment.Attempt)))
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
