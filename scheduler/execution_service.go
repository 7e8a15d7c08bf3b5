package scheduler

import (
	"context"
	"strings"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/paddock-build/paddock/auth"
	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/grpcerr"
	"github.com/paddock-build/paddock/rev2"
	"github.com/paddock-build/paddock/storage"
)

// requestMetadataHeader carries a serialized RequestMetadata (REv2).
const requestMetadataHeader = "build.bazel.remote.execution.v2.requestmetadata-bin"

// maxRequestMetadata bounds that header. Bazel's is a few hundred bytes;
// every queued action keeps it (and its invocation id) until it runs, so
// a client sending the 1 MiB that gRPC's headers allow would make each of
// its queued actions cost the scheduler a megabyte instead of 3 KiB.
const maxRequestMetadata = 16 << 10

// maxMessageBytes bounds the Action and Command read from the CAS.
const maxMessageBytes = 16 << 20

// executionService is the gRPC edge of the REv2 Execution service.
type executionService struct {
	repb.UnimplementedExecutionServer
	s *Scheduler
}

func (x *executionService) Execute(req *repb.ExecuteRequest, stream repb.Execution_ExecuteServer) error {
	ctx := stream.Context()
	name, err := x.s.submit(ctx, req)
	if err != nil {
		return err
	}
	return x.s.follow(ctx, name, auth.TenantOf(ctx), func(v opView) error { return sendOperation(ctx, stream.Send, v) })
}

func (x *executionService) WaitExecution(req *repb.WaitExecutionRequest, stream repb.Execution_WaitExecutionServer) error {
	ctx := stream.Context()
	if x.s.outputsGone(ctx, req.Name, auth.TenantOf(ctx)) {
		return errOperationNotFound(req.Name, ": its result's outputs have since been evicted from the CAS; Execute the action again")
	}
	return x.s.follow(ctx, req.Name, auth.TenantOf(ctx), func(v opView) error { return sendOperation(ctx, stream.Send, v) })
}

// submit validates an ExecuteRequest, answers it from the action cache if
// it can, and otherwise hands it to the core. It returns the operation name.
func (s *Scheduler) submit(ctx context.Context, req *repb.ExecuteRequest) (string, error) {
	fn, err := digest.CheckFunction(req.DigestFunction)
	if err != nil {
		return "", err
	}
	ad, err := digest.FromProto(fn, req.ActionDigest, "action_digest")
	if err != nil {
		return "", err
	}
	fn = ad.Function()
	instance := req.InstanceName
	// Refused before anything is read or queued: an action run under a
	// name ByteStream cannot address would fail only when the client
	// reads its outputs; and every queued action, its queue and its
	// metrics keep the name, which the check bounds.
	if err := rev2.CheckInstanceName(instance); err != nil {
		return "", err
	}
	// The Action, Command and results are read from the instance's CAS
	// partition.
	ctx = storage.WithInstance(ctx, instance)
	owner := auth.TenantOf(ctx)
	name := "operations/" + s.newID()

	// The request is checked whole before the action cache is asked: one
	// it would refuse is refused on a hit too (REv2: a timeout above the
	// maximum MUST be rejected), and a hit never answers an Action whose
	// Command or platform no worker would run.
	a, err := s.loadAction(ctx, fn, ad)
	if err != nil {
		return "", err
	}
	if !req.SkipCacheLookup && !a.doNotCache {
		if res := s.cachedResult(ctx, instance, fn, ad); res != nil {
			return name, s.accept(ctx, name, func(now time.Time) error {
				s.core.AddCompleted(now, name, instance, owner, ad, &repb.ExecuteResponse{Result: res, CachedResult: true})
				s.metrics.executed(owner, instance, outcomeCacheHit)
				return nil
			})
		}
	}
	queueKey, routing := routingOf(instance, a.platform, s.route)
	rawMeta, invocation, err := requestMetadata(ctx)
	if err != nil {
		return "", err
	}

	sub := submission{
		name:            name,
		instance:        instance,
		owner:           owner,
		action:          ad,
		cacheable:       !a.doNotCache,
		skipCacheLookup: req.SkipCacheLookup,
		priority:        min(max(req.GetExecutionPolicy().GetPriority(), MinPriority), MaxPriority),
		invocation:      invocation,
		queueKey:        queueKey,
		routing:         routing,
		spec: actionSpec{
			command:         a.command,
			inputRoot:       a.inputRoot,
			platform:        workerProperties(a.platform),
			timeout:         a.timeout,
			doNotCache:      a.doNotCache,
			requestMetadata: rawMeta,
			workingDir:      a.workingDirectory,
			workingDirKnown: true,
		},
	}
	return name, s.accept(ctx, name, func(now time.Time) error { return s.execute(now, sub) })
}

// execute hands sub to the core, and counts it queued or joined. Called
// under the scheduler's lock (accept).
func (s *Scheduler) execute(now time.Time, sub submission) error {
	op, err := s.core.Execute(now, sub)
	if err != nil {
		return err
	}
	outcome := outcomeQueued
	if op.exec != nil && op.exec.id != sub.name {
		outcome = outcomeJoined
	}
	s.metrics.executed(sub.owner, sub.instance, outcome)
	return nil
}

// MinPriority and MaxPriority are the range of ExecutionPolicy.priority
// the scheduler advertises in Capabilities (a lower value runs sooner, 0
// is the default). A priority outside it is taken as the nearest end, so
// that the advertised range is what ordering uses.
const (
	MinPriority = -1000
	MaxPriority = 1000
)

// cachedResult is the action cache's complete result for ad, or nil. (An
// Action marked do_not_cache is never answered from the cache, whoever
// wrote an entry for it: its result "cannot be cached" (REv2); submit
// does not ask.)
func (s *Scheduler) cachedResult(ctx context.Context, instance string, fn digest.Function, ad digest.Digest) *repb.ActionResult {
	res, err := s.ac.Get(ctx, instance, ad)
	if err != nil || storage.CheckComplete(ctx, s.cas, fn, res) != nil {
		return nil
	}
	return res
}

// loadedAction is what the scheduler keeps of an Execute's Action and
// Command, read from the CAS and validated.
type loadedAction struct {
	command, inputRoot digest.Digest
	timeout            time.Duration
	doNotCache         bool
	platform           *repb.Platform // the effective one: the Action's, or the Command's (REv2 2.0)
	workingDirectory   string         // the Command's, to check a worker's result against (checkWorkerResult)
}

// loadAction reads the Action ad and its Command from the CAS and checks
// them as a worker would: a missing blob is FAILED_PRECONDITION naming it,
// anything a worker would refuse is INVALID_ARGUMENT naming the field.
// Each message is read and checked within the process's memory budget for
// such reads (storage.HoldMemory), one after the other, and only what is
// kept outlives its turn: a client repeating Execute of an action whose
// Command is 16 MiB no longer has every concurrent call hold a copy.
func (s *Scheduler) loadAction(ctx context.Context, fn digest.Function, ad digest.Digest) (loadedAction, error) {
	if err := s.requirePresent(ctx, []digest.Digest{ad}, []string{"action_digest"}); err != nil {
		return loadedAction{}, err
	}
	release, err := storage.HoldMemory(ctx, ad.SizeBytes())
	if err != nil {
		return loadedAction{}, err
	}
	a, actionPlatform, err := s.readAction(ctx, fn, ad)
	release()
	if err != nil {
		return loadedAction{}, err
	}
	if err := s.requirePresent(ctx, []digest.Digest{a.command, a.inputRoot}, []string{"action.command_digest", "action.input_root_digest"}); err != nil {
		return loadedAction{}, err
	}
	if release, err = storage.HoldMemory(ctx, a.command.SizeBytes()); err != nil {
		return loadedAction{}, err
	}
	a.platform, a.workingDirectory, err = s.readCommand(ctx, a.command, actionPlatform)
	release()
	return a, err
}

// readAction reads and checks the Action ad. It returns the Action's
// platform too, checked when it is the effective one (not empty).
func (s *Scheduler) readAction(ctx context.Context, fn digest.Function, ad digest.Digest) (loadedAction, *repb.Platform, error) {
	action := &repb.Action{}
	if err := storage.GetProto(ctx, s.cas, ad, action, maxMessageBytes); err != nil {
		// Gone since requirePresent found it: evicted, or found corrupt
		// and removed.
		return loadedAction{}, nil, rev2.MissingIfGone(prefix(err, "action_digest"), rev2.MissingBlob{Digest: ad, What: "action_digest"})
	}
	ds, timeout, err := rev2.CheckAction(fn, action, s.cfg.MaxActionTimeout, s.cfg.DefaultActionTimeout)
	if err != nil {
		return loadedAction{}, nil, err
	}
	if len(action.GetPlatform().GetProperties()) > 0 {
		if err := rev2.CheckPlatform(action.Platform, "action.platform", s.isKnown); err != nil {
			return loadedAction{}, nil, err
		}
	}
	return loadedAction{command: ds.Command, inputRoot: ds.InputRoot, timeout: timeout, doNotCache: action.DoNotCache}, action.Platform, nil
}

// readCommand reads and checks the Command d and returns the effective
// platform (actionPlatform, or the Command's when that is empty) and the
// Command's working directory.
func (s *Scheduler) readCommand(ctx context.Context, d digest.Digest, actionPlatform *repb.Platform) (*repb.Platform, string, error) {
	command := &repb.Command{}
	if err := storage.GetProto(ctx, s.cas, d, command, maxMessageBytes); err != nil {
		return nil, "", rev2.MissingIfGone(prefix(err, "action.command_digest"), rev2.MissingBlob{Digest: d, What: "action.command_digest"})
	}
	if err := rev2.CheckCommand(command); err != nil {
		return nil, "", err
	}
	if len(actionPlatform.GetProperties()) > 0 {
		return actionPlatform, command.WorkingDirectory, nil // checked by readAction
	}
	platform, field := rev2.EffectivePlatform(&repb.Action{Platform: actionPlatform}, command)
	if err := rev2.CheckPlatform(platform, field, s.isKnown); err != nil {
		return nil, "", err
	}
	return platform, command.WorkingDirectory, nil
}

func (s *Scheduler) isKnown(name string) bool { return s.known[name] }

// accept hands an Execute of the operation name to the core and returns
// once a restart would keep it: only then may the client learn the name.
// The call counts as following the operation from the moment the core
// has it (under the same lock), so that however the call ends the
// operation is under abandonment. Counted only from Execute's follow, an
// operation whose call ended while its record was written (the client's
// deadline, a failed journal) was followed by nobody and never abandoned:
// it held a worker's slot for its whole timeout, and kept running when an
// identical Execute that had joined it was cancelled. Now it is idle from
// the call's end, as one whose client left after learning its name.
func (s *Scheduler) accept(ctx context.Context, name string, change func(now time.Time) error) error {
	s.mu.Lock()
	if err := s.checkJournal(); err != nil {
		s.mu.Unlock()
		return err
	}
	if err := change(s.clock.Now()); err != nil {
		s.mu.Unlock()
		return err
	}
	seq := s.apply()
	s.followers.attach(name)
	s.mu.Unlock()
	err := s.waitDurable(ctx, seq)
	s.mu.Lock()
	s.followers.detach(name, s.clock.Now())
	s.mu.Unlock()
	return err
}

// requirePresent fails with FAILED_PRECONDITION and a PreconditionFailure
// naming every missing blob, as REv2 asks of Execute.
func (s *Scheduler) requirePresent(ctx context.Context, ds []digest.Digest, fields []string) error {
	missing, err := s.cas.FindMissing(ctx, ds)
	if err != nil {
		return prefix(err, "find missing "+strings.Join(fields, ", "))
	}
	blobs := make([]rev2.MissingBlob, len(missing))
	for i, m := range missing {
		blobs[i].Digest = m
		for j, d := range ds {
			if d == m {
				blobs[i].What = fields[j]
			}
		}
	}
	if len(blobs) == 0 {
		return nil
	}
	return rev2.Missing(blobs...)
}

func prefix(err error, what string) error {
	st := grpcerr.Convert(err)
	return status.Errorf(st.Code(), "%s: %s", what, st.Message())
}

// requestMetadata returns the raw RequestMetadata header and its
// tool_invocation_id ("" when absent or unreadable); a header over
// maxRequestMetadata is INVALID_ARGUMENT.
func requestMetadata(ctx context.Context) ([]byte, string, error) {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return nil, "", nil
	}
	vals := md.Get(requestMetadataHeader)
	if len(vals) == 0 {
		return nil, "", nil
	}
	if len(vals[0]) > maxRequestMetadata {
		return nil, "", status.Errorf(codes.InvalidArgument, "header %s is %d bytes; this scheduler accepts at most %d", requestMetadataHeader, len(vals[0]), maxRequestMetadata)
	}
	raw := []byte(vals[0])
	rm := &repb.RequestMetadata{}
	if proto.Unmarshal(raw, rm) != nil {
		return nil, "", nil
	}
	return raw, rm.ToolInvocationId, nil
}

// toOperation renders an operation for clients.
func toOperation(v opView) *longrunningpb.Operation {
	md := &repb.ExecuteOperationMetadata{
		Stage:          v.stage,
		ActionDigest:   v.action.Proto(),
		DigestFunction: v.action.Function(),
		PartialExecutionMetadata: &repb.ExecutedActionMetadata{
			Worker:          v.worker,
			QueuedTimestamp: timestamppb.New(v.queuedAt),
		},
	}
	if !v.startedAt.IsZero() {
		md.PartialExecutionMetadata.WorkerStartTimestamp = timestamppb.New(v.startedAt)
	}
	op := &longrunningpb.Operation{Name: v.name, Done: v.done}
	op.Metadata, _ = anypb.New(md)
	if v.done {
		resp, _ := anypb.New(v.response)
		op.Result = &longrunningpb.Operation_Response{Response: resp}
	}
	return op
}
