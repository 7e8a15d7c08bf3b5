package scheduler

import (
	"context"
	"log/slog"
	"unicode/utf8"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/paddock-build/paddock/api/workerpb"
)

// logResult writes the operator's one info line per action a worker
// reports: which action (digest, instance, the client's invocation id),
// where it ran, how long each stage took and how it ended. The operation
// name is also what the worker's own log lines carry, so one action can be
// followed from the frontend to the worker. With
// --log-format json each is one object a log collector can index. Called
// under s.mu, before the core takes the result, for a result the core
// accepts (core.Reported): e is the execution it reports on, in the
// attempt reported. A stale result is logged by logStaleResult instead.
func (s *Scheduler) logResult(worker string, e *execution, resp *repb.ExecuteResponse) {
	attrs := []slog.Attr{
		slog.String("operation", e.id), slog.String("action", e.key.action.String()),
		slog.String("instance", clipLogged(e.key.instance)), slog.String("invocation", clipLogged(e.invocation)),
		slog.String("worker", worker), slog.Int("attempt", int(e.attempt)),
		slog.String("status", codes.Code(resp.GetStatus().GetCode()).String()),
	}
	if md := (&repb.RequestMetadata{}); len(e.spec.requestMetadata) > 0 && proto.Unmarshal(e.spec.requestMetadata, md) == nil {
		// The client's own ids (Bazel's), to find the action in its logs.
		attrs = append(attrs, slog.String("correlated_invocations_id", clipLogged(md.CorrelatedInvocationsId)),
			slog.String("client_action_id", clipLogged(md.ActionId)), slog.String("mnemonic", clipLogged(md.ActionMnemonic)))
	}
	if res := resp.GetResult(); res != nil {
		attrs = append(attrs, slog.Int("exit_code", int(res.ExitCode)))
		md := res.ExecutionMetadata
		stage := func(key string, from, to *timestamppb.Timestamp) {
			if from != nil && to != nil {
				attrs = append(attrs, slog.Float64(key, to.AsTime().Sub(from.AsTime()).Seconds()))
			}
		}
		stage("queued_seconds", md.GetQueuedTimestamp(), md.GetWorkerStartTimestamp())
		stage("fetch_seconds", md.GetInputFetchStartTimestamp(), md.GetInputFetchCompletedTimestamp())
		stage("run_seconds", md.GetExecutionStartTimestamp(), md.GetExecutionCompletedTimestamp())
		stage("upload_seconds", md.GetOutputUploadStartTimestamp(), md.GetOutputUploadCompletedTimestamp())
		stage("worker_seconds", md.GetWorkerStartTimestamp(), md.GetWorkerCompletedTimestamp())
	}
	s.log.LogAttrs(context.Background(), slog.LevelInfo, "action completed", attrs...)
}

// maxLoggedField bounds each client-given string of the line (ids from
// the client's RequestMetadata, the instance name): a client padding them
// made every "action completed" line 11 KB, 3.7 MB of log for 395
// actions. Bazel's ids are UUIDs, its mnemonics short words.
const maxLoggedField = 128

// clipLogged is s cut to maxLoggedField bytes, at a rune's start, with
// "…" after a cut.
func clipLogged(s string) string {
	if len(s) <= maxLoggedField {
		return s
	}
	n := maxLoggedField
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// logStaleResult notes a result the core ignores, with the attempt the
// worker reported: it is not the current attempt of that worker's
// current session (the action was requeued, perhaps to another worker,
// or the worker's session was replaced). It once went out as "action
// completed" with the scheduler's current attempt, which told an
// operator an action had completed that was still queued or running.
func (s *Scheduler) logStaleResult(worker string, r *workerpb.Result, resp *repb.ExecuteResponse) {
	s.log.Info("scheduler: stale action result ignored", "operation", clipLogged(r.OperationName), "worker", worker,
		"attempt", r.Attempt, "status", codes.Code(resp.GetStatus().GetCode()).String())
}
