package worker

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/api/runnerpb"
	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/internal/clock"
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

// roomRecorder is a DiskRoom that records what it is asked for.
type roomRecorder struct{ asked []int64 }

func (r *roomRecorder) MakeRoom(_ context.Context, need int64) error {
	r.asked = append(r.asked, need)
	return nil
}

// exitRunner runs nothing: the command "wrote" what the test put in the
// action's directory, and exited with code.
type exitRunner struct{ code int32 }

func (r exitRunner) Run(context.Context, *runnerpb.RunRequest) (*runnerpb.RunResponse, error) {
	return &runnerpb.RunResponse{ExitCode: r.code}, nil
}

// TestAFullDiskAsksTheCASForRoom: an action the full disk may have cut
// asks the store that can give room back (the disk CAS of `paddock up`)
// for twice the room its own files took, not counting its inputs (links
// to cached files, which the retry shares): the CAS keeps only a
// twentieth of the disk free and evicts only as it writes, and an action
// that needed more scratch room than that failed on every retry. An
// action the disk did not cut asks nothing.
func TestAFullDiskAsksTheCASForRoom(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "scratch"), make([]byte, 3<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	cached := filepath.Join(t.TempDir(), "cached")
	if err := os.WriteFile(cached, make([]byte, 5<<20), 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(cached, filepath.Join(dir, "input")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		full      bool
		code      int32
		exhausted bool
		want      []int64
	}{
		{"failed on a full disk", true, 1, true, []int64{2 * (3 << 20)}},
		{"failed on a disk with room", false, 1, false, nil},
		{"succeeded with nothing the disk could cut", true, 0, false, nil},
	} {
		room := &roomRecorder{}
		s := &runStep{runner: exitRunner{c.code}, clock: clock.Real{}, room: room, logger: slog.New(slog.DiscardHandler),
			disk: &diskWatch{full: func() bool { return c.full }, interval: time.Hour}}
		j := &Job{Dir: dir, Command: &repb.Command{}, Assignment: &workerpb.Assignment{}, Action: &repb.Action{}, Metadata: &repb.ExecutedActionMetadata{}}
		_, err := s.Execute(t.Context(), j)
		if (status.Code(err) == codes.ResourceExhausted) != c.exhausted {
			t.Errorf("%s: %v, want RESOURCE_EXHAUSTED %v", c.name, err, c.exhausted)
		}
		if !slices.Equal(room.asked, c.want) {
			t.Errorf("%s: the CAS was asked for %v bytes, want %v", c.name, room.asked, c.want)
		}
	}
}
