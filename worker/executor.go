package worker

import (
	"context"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/api/runnerpb"
	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/digest"
)

// Executor is one step of the worker's chain: it does its part of an
// action and calls the next step, in the spirit of Buildbarn's decorator
// build executors. The steps, outermost first (see Worker.chain):
//
//	metadataStep   worker timestamps; errors become the response's status
//	buildDirStep   a build directory for the action, released after
//	actionStep     the Action and Command fetched and checked (rev2)
//	inputRootStep  the input root materialised, output parents created
//	cacheStep      a clean result written to the action cache
//	uploadStep     outputs, stdout and stderr uploaded into the result
//	runStep        the command run by the runner
//
// A step that needs to see every action (metrics, tracing, a tenant check)
// is one more Executor wrapped around, or into, the chain; no other step
// changes. Errors are gRPC statuses; metadataStep turns them into the
// ExecuteResponse's status.
type Executor interface {
	Execute(ctx context.Context, j *Job) (*repb.ExecuteResponse, error)
}

// Job is one action on its way through the chain. Each step fills in what
// it is responsible for; later steps read it.
type Job struct {
	Assignment *workerpb.Assignment
	// Metadata is the ExecutedActionMetadata of the result; steps set
	// their own timestamps in it.
	Metadata *repb.ExecutedActionMetadata

	// Set by buildDirStep: the action's build directory, and the input
	// root inside it.
	Dir, Root string
	// Ran is set by runStep once the runner has answered: the sandbox is
	// gone and nothing writes in Dir any more.
	Ran bool

	// Set by actionStep.
	Fn           digest.Function
	ActionDigest digest.Digest
	Action       *repb.Action
	Command      *repb.Command
	InputRoot    digest.Digest

	// Set by inputRootStep: a descriptor of Root, for steps that must
	// resolve paths beneath it without following symlinks.
	RootFd int

	// Set by runStep: the runner's answer and the request it answered.
	Request *runnerpb.RunRequest
	Run     *runnerpb.RunResponse

	// Uncacheable, when set by any step, says why the result must not be
	// written to the action cache (truncated output, an OOM kill, ...).
	Uncacheable string
	// FileSizeLimit is the largest file the command could write
	// (RLIMIT_FSIZE, the runner's disk quota; 0: none), as the runner
	// reports it: an output of that size may have been cut there.
	FileSizeLimit int64
}

// ExecutorFunc adapts a function to Executor.
type ExecutorFunc func(ctx context.Context, j *Job) (*repb.ExecuteResponse, error)

// Execute calls f.
func (f ExecutorFunc) Execute(ctx context.Context, j *Job) (*repb.ExecuteResponse, error) {
	return f(ctx, j)
}
