package storage

import (
	"context"
	"fmt"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
)

// actionCacheServer implements ActionCache over an ActionCache and the CAS:
// results are only returned when complete (every referenced blob present),
// and requested contents are inlined within MaxInlineBytes.
type actionCacheServer struct {
	repb.UnimplementedActionCacheServer
	opts *ServerOptions
}

func (s *actionCacheServer) GetActionResult(ctx context.Context, req *repb.GetActionResultRequest) (*repb.ActionResult, error) {
	ctx = WithInstance(ctx, req.InstanceName)
	fn, d, err := actionKey(req.DigestFunction, req.ActionDigest)
	if err != nil {
		return nil, err
	}
	result, err := s.opts.AC.Get(ctx, req.InstanceName, d)
	if err != nil {
		return nil, err
	}
	if err := s.checkComplete(ctx, fn, result); err != nil {
		if status.Code(err) == codes.NotFound {
			return nil, status.Errorf(codes.NotFound, "action %s: cached result is incomplete, execute it again: %s", d, status.Convert(err).Message())
		}
		return nil, err
	}
	if err := s.inline(ctx, fn, req, result); err != nil {
		return nil, err
	}
	return result, nil
}

// actionKey is a request's digest function and action digest, checked:
// GetActionResult and UpdateActionResult name the entry the same way, and
// refuse a bad one with the same INVALID_ARGUMENT.
func actionKey(df repb.DigestFunction_Value, pd *repb.Digest) (digest.Function, digest.Digest, error) {
	fn, err := digest.CheckFunction(df)
	if err != nil {
		return fn, digest.Digest{}, err
	}
	d, err := digest.FromProto(fn, pd, "action_digest")
	return fn, d, err
}

// checkComplete is CheckComplete, unless the front checks (a shard node).
func (s *actionCacheServer) checkComplete(ctx context.Context, fn digest.Function, result *repb.ActionResult) error {
	if s.opts.SkipCompletenessChecks {
		return nil
	}
	return CheckComplete(ctx, s.opts.CAS, fn, result)
}

// inline fills in the contents the client asked for, in the order stdout,
// stderr, output files, while they fit in MaxInlineBytes together. What does
// not fit is left for the client to fetch by digest, as the spec allows.
func (s *actionCacheServer) inline(ctx context.Context, fn digest.Function, req *repb.GetActionResultRequest, result *repb.ActionResult) error {
	budget := s.opts.MaxInlineBytes
	fetch := func(pd *repb.Digest) ([]byte, bool, error) {
		if pd == nil || pd.SizeBytes > budget {
			return nil, false, nil
		}
		d, err := digest.FromProto(fn, pd, "result digest")
		if err != nil {
			return nil, false, err
		}
		b, err := GetBytes(ctx, s.opts.CAS, d, budget)
		if err != nil {
			return nil, false, fmt.Errorf("inline %s: %w", d, err)
		}
		budget -= int64(len(b))
		return b, true, nil
	}
	if req.InlineStdout && len(result.StdoutRaw) == 0 {
		if b, ok, err := fetch(result.StdoutDigest); err != nil {
			return err
		} else if ok {
			result.StdoutRaw = b
		}
	}
	if req.InlineStderr && len(result.StderrRaw) == 0 {
		if b, ok, err := fetch(result.StderrDigest); err != nil {
			return err
		} else if ok {
			result.StderrRaw = b
		}
	}
	want := map[string]bool{}
	for _, p := range req.InlineOutputFiles {
		want[p] = true
	}
	for _, f := range result.OutputFiles {
		if !want[f.Path] || len(f.Contents) > 0 {
			continue
		}
		if b, ok, err := fetch(f.Digest); err != nil {
			return err
		} else if ok {
			f.Contents = b
		}
	}
	return nil
}

func (s *actionCacheServer) UpdateActionResult(ctx context.Context, req *repb.UpdateActionResultRequest) (*repb.ActionResult, error) {
	ctx = WithInstance(ctx, req.InstanceName)
	fn, d, err := actionKey(req.DigestFunction, req.ActionDigest)
	if err != nil {
		return nil, err
	}
	if req.ActionResult == nil {
		return nil, status.Error(codes.InvalidArgument, "action_result is missing")
	}
	if err := ValidateActionResult(fn, req.ActionResult); err != nil {
		return nil, err
	}
	if !s.opts.SkipCompletenessChecks {
		if err := requireStored(ctx, s.opts.CAS, fn, d, req.ActionResult); err != nil {
			return nil, err
		}
	}
	if err := s.opts.AC.Put(ctx, req.InstanceName, d, req.ActionResult); err != nil {
		return nil, fmt.Errorf("update action result %s: %w", d, err)
	}
	return req.ActionResult, nil
}

// requireStored refuses, with FAILED_PRECONDITION as REv2 asks, a result
// whose Action or any referenced blob is not in the CAS: an entry that
// points at nothing would be served to every client of the instance, and
// a result for an action nobody uploaded is how a cache gets poisoned.
func requireStored(ctx context.Context, cas BlobStore, fn digest.Function, action digest.Digest, r *repb.ActionResult) error {
	missing, err := cas.FindMissing(ctx, []digest.Digest{action})
	if err != nil {
		return fmt.Errorf("find action %s: %w", action, err)
	}
	if len(missing) > 0 {
		st := status.Newf(codes.FailedPrecondition, "action_digest: the Action %s is not in the CAS; upload it before its result", action)
		if st2, err := st.WithDetails(&errdetails.PreconditionFailure{Violations: []*errdetails.PreconditionFailure_Violation{{
			Type: "MISSING", Subject: "blobs/" + action.String(), Description: "the Action is not in the CAS"}}}); err == nil {
			st = st2
		}
		return st.Err()
	}
	if err := CheckComplete(ctx, cas, fn, r); err != nil {
		if status.Code(err) == codes.NotFound {
			return status.Errorf(codes.FailedPrecondition, "action_result: %s; upload the outputs before the result", status.Convert(err).Message())
		}
		return err
	}
	return nil
}

// ValidateActionResult checks every digest and path in r, so that a
// malformed result is refused when written rather than served later.
// Errors are INVALID_ARGUMENT naming the field.
func ValidateActionResult(fn digest.Function, r *repb.ActionResult) error {
	check := func(pd *repb.Digest, field string, required bool) error {
		if pd == nil && !required {
			return nil
		}
		_, err := digest.FromProto(fn, pd, "action_result."+field)
		return err
	}
	for i, f := range r.OutputFiles {
		if f.Path == "" {
			return status.Errorf(codes.InvalidArgument, "action_result.output_files[%d].path is empty", i)
		}
		if err := check(f.Digest, fmt.Sprintf("output_files[%d].digest", i), true); err != nil {
			return err
		}
	}
	for i, dir := range r.OutputDirectories {
		// Either form will do (Command.output_directory_format); a
		// directory with neither has no contents to serve.
		field := fmt.Sprintf("output_directories[%d]", i)
		if err := check(dir.TreeDigest, field+".tree_digest", dir.RootDirectoryDigest == nil); err != nil {
			return err
		}
		if err := check(dir.RootDirectoryDigest, field+".root_directory_digest", false); err != nil {
			return err
		}
	}
	if err := check(r.StdoutDigest, "stdout_digest", false); err != nil {
		return err
	}
	return check(r.StderrDigest, "stderr_digest", false)
}
