package worker

import (
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/api/runnerpb"
)

// A full disk at the end of an action fails it only when the disk could
// have cut its result without a word: stdout or stderr cut, output files
// or directories declared, or a failure (perhaps of ENOSPC). An action
// that succeeded with nothing but its whole stdout is right whatever the
// disk: one tenant that filled the disk had failed every other tenant's
// actions that ended meanwhile (outside probe).
func TestWhatAFullDiskMayCut(t *testing.T) {
	job := func(outputs ...string) *Job { return &Job{Command: &repb.Command{OutputPaths: outputs}} }
	for _, c := range []struct {
		name string
		job  *Job
		run  *runnerpb.RunResponse
		want bool
	}{
		{"stdout only, succeeded", job(), &runnerpb.RunResponse{}, false},
		{"stdout cut", job(), &runnerpb.RunResponse{StdoutTruncated: true}, true},
		{"stderr cut", job(), &runnerpb.RunResponse{StderrTruncated: true}, true},
		{"an output file", job("out.txt"), &runnerpb.RunResponse{}, true},
		{"a 2.0 output directory", &Job{Command: &repb.Command{OutputDirectories: []string{"d"}}}, &runnerpb.RunResponse{}, true},
		{"failed", job(), &runnerpb.RunResponse{ExitCode: 1}, true},
	} {
		if got := mayBeCutByFullDisk(c.job, c.run); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
