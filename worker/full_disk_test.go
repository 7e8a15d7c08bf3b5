package worker

import (
	"sync/atomic"
	"testing"
	"time"

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

// TestADiskFullWhileTheActionRan: the disk full at some moment while an
// action ran counts, though it has room again when the action ends (the
// filler was another action's, since removed): an output file cut short
// meanwhile was cached. A disk full before the action began, or only
// during another's run that ended before it began, does not count.
func TestADiskFullWhileTheActionRan(t *testing.T) {
	var full atomic.Bool
	var looks atomic.Int64
	w := &diskWatch{full: func() bool { looks.Add(1); return full.Load() }, interval: time.Millisecond}
	waitLooks := func() { // two more looks: one has surely seen the state set before
		t.Helper()
		n := looks.Load()
		for deadline := time.Now().Add(10 * time.Second); looks.Load() < n+2; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the disk is not being looked at while an action runs")
			}
		}
	}
	end := w.begin()
	full.Store(true)
	waitLooks()
	full.Store(false)
	if !end() {
		t.Error("the disk full while the action ran, with room at its end: not seen")
	}
	if end := w.begin(); end() {
		t.Error("a later action on a disk with room: counted full")
	}
	end = w.begin()
	if full.Store(true); !end() {
		t.Error("the disk full when the action ended: not seen")
	}
	full.Store(false)
	if end := w.begin(); end() {
		t.Error("an action after the disk was full, not during: counted full")
	}
}
