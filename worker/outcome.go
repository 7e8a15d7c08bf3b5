package worker

import (
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/paddock-build/paddock/api/runnerpb"
)

// reportOutcome tells the client what happened to the sandbox beyond the
// exit code: a timeout, an OOM kill or a pids-limit hit anywhere in it,
// truncated output. Each goes in the response's message, and the flags in
// the auxiliary metadata as a google.protobuf.Struct (a well-known type
// any client can print) with keys oom_killed and pids_limit_hit. Such a
// result is not cached (j.Uncacheable): it may depend on the machine's
// memory or load, not only on the action's inputs.
func reportOutcome(j *Job, run *runnerpb.RunResponse, resp *repb.ExecuteResponse) {
	var notes []string
	timedOut := codes.Code(run.StatusCode) == codes.DeadlineExceeded
	switch {
	case timedOut:
		// The status says so, with the timeout: the message does not
		// repeat it, and says only that nothing was cached.
		j.Uncacheable = "timed out"
	case run.Cancelled:
		j.Uncacheable = "cancelled"
	}
	if run.OomKilled {
		notes = append(notes, "a process of the action was killed for running out of memory (the action's memory limit); raise it with the EstimatedMemory platform property")
		j.Uncacheable = "OOM kill"
	}
	if run.PidsLimitHit {
		notes = append(notes, "the action hit its limit on processes and threads: a fork failed")
		j.Uncacheable = "pids limit hit"
	}
	// The runner's own account, with the limits, follows ours.
	if run.StatusMessage != "" && codes.Code(run.StatusCode) == codes.OK {
		notes = append(notes, "runner: "+run.StatusMessage)
	}
	if run.StdoutTruncated || run.StderrTruncated {
		notes = append(notes, "stdout or stderr was cut short: the command wrote more than the worker's output cap, or the worker's disk was full")
		j.Uncacheable = "truncated output"
	}
	if j.Uncacheable != "" && (len(notes) > 0 || timedOut) {
		notes = append(notes, "the result was not cached")
	}
	resp.Message = strings.Join(notes, "; ")
	if run.OomKilled || run.PidsLimitHit {
		s := &structpb.Struct{Fields: map[string]*structpb.Value{
			"oom_killed":     structpb.NewBoolValue(run.OomKilled),
			"pids_limit_hit": structpb.NewBoolValue(run.PidsLimitHit),
		}}
		if a, err := anypb.New(s); err == nil {
			j.Metadata.AuxiliaryMetadata = append(j.Metadata.AuxiliaryMetadata, a)
		}
	}
}
