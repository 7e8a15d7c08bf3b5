package storage

import (
	"context"
	"fmt"
	"path"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/grpcerr"
	"github.com/paddock-build/paddock/rev2"
)

// actionCacheServer implements ActionCache over an ActionCache and the CAS:
// results are only returned when complete (every referenced blob present),
// and requested contents are inlined within MaxInlineBytes.
type actionCacheServer struct {
	repb.UnimplementedActionCacheServer
	opts *ServerOptions
}

func (s *actionCacheServer) GetActionResult(ctx context.Context, req *repb.GetActionResultRequest) (*repb.ActionResult, error) {
	ctx, fn, d, err := actionScope(ctx, req.InstanceName, req.DigestFunction, req.ActionDigest)
	if err != nil {
		return nil, err
	}
	result, err := s.opts.AC.Get(ctx, req.InstanceName, d)
	if err != nil {
		return nil, err
	}
	if err := s.checkServable(ctx, fn, result); err != nil {
		switch status.Code(err) {
		case codes.NotFound:
			return nil, status.Errorf(codes.NotFound, "action %s: cached result is incomplete, execute it again: %s", d, grpcerr.Convert(err).Message())
		case codes.InvalidArgument:
			return nil, status.Errorf(codes.NotFound, "action %s: cached result is one UpdateActionResult would refuse, execute it again: %s", d, grpcerr.Convert(err).Message())
		}
		return nil, err
	}
	dropInlined(result)
	if err := s.inline(ctx, fn, req, result); err != nil {
		if rev2.Gone(err) { // evicted since, or found corrupt and removed
			return nil, status.Errorf(codes.NotFound, "action %s: cached result is incomplete, execute it again: %s", d, grpcerr.Convert(err).Message())
		}
		return nil, err
	}
	return result, nil
}

// dropInlined clears the contents inlined in r (stdout_raw, stderr_raw,
// output files' contents). What GetActionResult inlines it reads from the
// CAS by digest, and only on request, as the spec says a server should: a
// result stored with bytes of its own (a client SHOULD NOT send them)
// must not serve bytes that differ from the digests beside them.
func dropInlined(r *repb.ActionResult) {
	r.StdoutRaw, r.StderrRaw = nil, nil
	for _, f := range r.OutputFiles {
		f.Contents = nil
	}
}

// actionScope is requestScope with the action digest, checked:
// GetActionResult and UpdateActionResult name the entry the same way, and
// refuse a bad one with the same INVALID_ARGUMENT. A request that leaves
// digest_function unset gets the function of its action digest (inferred
// from the hash length, as REv2 says), and every digest of the result is
// then held to it: one function per action, not one guess per digest.
func actionScope(ctx context.Context, instance string, df repb.DigestFunction_Value, pd *repb.Digest) (context.Context, digest.Function, digest.Digest, error) {
	ctx, fn, err := requestScope(ctx, instance, df)
	if err != nil {
		return ctx, fn, digest.Digest{}, err
	}
	d, err := digest.FromProto(fn, pd, "action_digest")
	if err != nil {
		return ctx, fn, digest.Digest{}, err
	}
	return ctx, d.Function(), d, nil
}

// checkServable is CheckComplete, or ValidateActionResult alone where the
// front checks completeness (a shard node): an entry that UpdateActionResult
// would now refuse (written before a rule was added, or straight to the
// store) is not served either. Either error is the caller's to make a miss.
func (s *actionCacheServer) checkServable(ctx context.Context, fn digest.Function, result *repb.ActionResult) error {
	if s.opts.SkipCompletenessChecks {
		return ValidateActionResult(fn, result)
	}
	return CheckComplete(ctx, s.opts.CAS, fn, result)
}

// clientRecvLimitBytes is gRPC's default receive limit in its Go and Java
// clients (4 MiB): a client that asks for contents inlined cannot be
// assumed to have raised it, so inlining never takes a reply past it.
const clientRecvLimitBytes = 4 << 20

// inline fills in the contents the client asked for, in the order stdout,
// stderr, output files, while they fit in MaxInlineBytes together. What does
// not fit is left for the client to fetch by digest, as the spec allows.
//
// The budget is also bounded by what the reply may still grow to: the spec
// says a server MUST NOT inline what would make the response exceed message
// size limits, and the limit that counts is the client's receive limit,
// which the server cannot see. A reply that fits in the default one
// (clientRecvLimitBytes) is kept within it; one already past it without
// inlining reaches only clients that raised theirs, and is kept within
// the server's send limit.
func (s *actionCacheServer) inline(ctx context.Context, fn digest.Function, req *repb.GetActionResultRequest, result *repb.ActionResult) error {
	budget := s.opts.MaxInlineBytes
	size := int64(proto.Size(result)) + inlineSlackBytes
	limit := s.opts.maxSendBytes()
	if size <= clientRecvLimitBytes {
		limit = min(limit, clientRecvLimitBytes)
	}
	room := limit - size
	fetch := func(pd *repb.Digest) ([]byte, bool, error) {
		// Each inlined field adds its tag and length to the reply too.
		if pd == nil || pd.SizeBytes > budget || pd.SizeBytes+inlineFieldBytes > room {
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
		room -= int64(len(b)) + inlineFieldBytes
		return b, true, nil
	}
	if req.InlineStdout {
		if b, ok, err := fetch(result.StdoutDigest); err != nil {
			return err
		} else if ok {
			result.StdoutRaw = b
		}
	}
	if req.InlineStderr {
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
		if !want[f.Path] {
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

// UpdateActionResult stores a result under the request's instance, whose
// name must be one ByteStream can address (rev2.CheckInstanceName), as
// the result's outputs are read back through it.
func (s *actionCacheServer) UpdateActionResult(ctx context.Context, req *repb.UpdateActionResultRequest) (*repb.ActionResult, error) {
	ctx, fn, d, err := actionScope(ctx, req.InstanceName, req.DigestFunction, req.ActionDigest)
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
		if err := CheckOutputsInside(req.ActionResult, s.workingDirectory(ctx, fn, d)); err != nil {
			return nil, err
		}
	}
	dropInlined(req.ActionResult)
	if err := s.opts.AC.Put(ctx, req.InstanceName, d, req.ActionResult); err != nil {
		return nil, fmt.Errorf("update action result %s: %w", d, err)
	}
	return req.ActionResult, nil
}

// workingDirectory is the working directory of the Command of action, or
// "" (the input root) when the Action or its Command cannot be read: the
// output paths of a result are relative to it.
func (s *actionCacheServer) workingDirectory(ctx context.Context, fn digest.Function, action digest.Digest) string {
	a := &repb.Action{}
	if err := GetProto(ctx, s.opts.CAS, action, a, maxCommandBytes); err != nil {
		return ""
	}
	cd, err := digest.FromProto(fn, a.CommandDigest, "command_digest")
	if err != nil {
		return ""
	}
	c := &repb.Command{}
	if err := GetProto(ctx, s.opts.CAS, cd, c, maxCommandBytes); err != nil {
		return ""
	}
	return c.WorkingDirectory
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
			return status.Errorf(codes.FailedPrecondition, "action_result: %s; upload the outputs before the result", grpcerr.Convert(err).Message())
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
	for _, o := range outputPaths(r) {
		if rev2.IsWholeDirectory(o.path) && o.emptyOK {
			continue
		}
		if err := rev2.CheckCleanPath(o.field+".path", o.path); err != nil {
			return err
		}
		if o.symlink {
			if err := checkSymlinkTarget(o); err != nil {
				return err
			}
		}
	}
	if err := checkOutputConflicts(r); err != nil {
		return err
	}
	for i, f := range r.OutputFiles {
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

// checkOutputConflicts refuses a result that says two things of one
// path, or puts an output below an output file: a client materialising
// it would write one over the other, and which wins is up to the client
// (REv2: one entry per output). A symlink may be listed twice with the
// same target, since servers compatible with REv2 2.0 list it both in
// output_symlinks and in output_file_symlinks or
// output_directory_symlinks; an output below a symlink is left alone, as
// a command may leave one below a symlink to a directory of its input
// root and Paddock's worker collects it there. The paths are clean.
func checkOutputConflicts(r *repb.ActionResult) error {
	paths := outputPaths(r)
	byPath := make(map[string]outputPath, len(paths))
	for _, o := range paths {
		if o.path == "" {
			continue
		}
		prev, ok := byPath[o.path]
		switch {
		case !ok:
			byPath[o.path] = o
		case !prev.symlink || !o.symlink || prev.target != o.target:
			return rev2.Invalid(o.field+".path", "%s is also %s", rev2.Quote(o.path), prev.field)
		}
	}
	for _, o := range paths {
		for dir := path.Dir(o.path); dir != "." && dir != "/" && o.path != ""; dir = path.Dir(dir) {
			if parent, ok := byPath[dir]; ok && parent.file {
				return rev2.Invalid(o.field+".path", "%s is below %s, an output file", rev2.Quote(o.path), parent.field)
			}
		}
	}
	return nil
}

// outputPath is one output path of an ActionResult, named by its entry
// (e.g. "action_result.output_symlinks[2]").
type outputPath struct {
	field, path string
	emptyOK     bool // an output directory may be the working directory itself
	file        bool // an output file
	symlink     bool // an output symlink, with its target
	target      string
}

// outputPaths lists every output path of r: each is relative to the
// Command's working directory, and a client writes its output there.
func outputPaths(r *repb.ActionResult) []outputPath {
	var out []outputPath
	add := func(field string, i int, p string, emptyOK bool) {
		out = append(out, outputPath{field: fmt.Sprintf("action_result.%s[%d]", field, i), path: p, emptyOK: emptyOK})
	}
	link := func(field string, i int, l *repb.OutputSymlink) {
		out = append(out, outputPath{field: fmt.Sprintf("action_result.%s[%d]", field, i), path: l.Path, symlink: true, target: l.Target})
	}
	for i, f := range r.OutputFiles {
		add("output_files", i, f.Path, false)
		out[len(out)-1].file = true
	}
	for i, d := range r.OutputDirectories {
		add("output_directories", i, d.Path, true)
	}
	for i, l := range r.OutputSymlinks {
		link("output_symlinks", i, l)
	}
	for i, l := range r.OutputFileSymlinks {
		link("output_file_symlinks", i, l)
	}
	for i, l := range r.OutputDirectorySymlinks {
		link("output_directory_symlinks", i, l)
	}
	return out
}

// checkSymlinkTarget holds an output symlink's target to the rule every
// symlink of an input root or output Tree is held to (rev2.CheckDirectory
// under RelativeSymlinksOnly: not empty, no NUL byte, not absolute, as
// Capabilities advertises symlink_absolute_path_strategy DISALLOWED), by
// checking a Directory that holds just this symlink, so that the rule
// stays in one place. o.path is already a clean path.
func checkSymlinkTarget(o outputPath) error {
	dir, name := path.Split(o.path)
	d := &repb.Directory{Symlinks: []*repb.SymlinkNode{{Name: name, Target: o.target}}}
	if err := rev2.CheckDirectory(d, strings.TrimSuffix(dir, "/"), rev2.RelativeSymlinksOnly); err != nil {
		return status.Errorf(codes.InvalidArgument, "%s.target: %s", o.field, grpcerr.Convert(err).Message())
	}
	return nil
}

// CheckOutputsInside refuses a result with an output path that leaves the
// input root from working directory wd: every client of the instance would
// write that output outside its own tree.
func CheckOutputsInside(r *repb.ActionResult, wd string) error {
	for _, o := range outputPaths(r) {
		if o.emptyOK && rev2.IsWholeDirectory(o.path) {
			// "." too: a worker's result for BuildStream 2's output
			// directory "." was refused here, and the action retried
			// until it failed UNAVAILABLE.
			continue
		}
		if err := rev2.CheckRelativePath(o.field+".path", o.path, wd); err != nil {
			return err
		}
	}
	return nil
}
