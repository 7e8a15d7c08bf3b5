package worker

import (
	"context"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/rev2"
	"github.com/paddock-build/paddock/storage"
)

// actionStep fetches the assignment's Action and Command from the CAS and
// checks them with the same rules as the scheduler (package rev2): the
// worker builds directories from their paths and must not trust its
// caller.
type actionStep struct {
	next Executor
	cas  storage.BlobStore
}

func (s *actionStep) Execute(ctx context.Context, j *Job) (*repb.ExecuteResponse, error) {
	a := j.Assignment
	j.Fn = digest.Function(a.DigestFunction)
	var err error
	if j.ActionDigest, err = assignedDigest(j.Fn, a.ActionDigest, "action_digest"); err != nil {
		return nil, err
	}
	j.Action = &repb.Action{}
	if err := storage.GetProto(ctx, s.cas, j.ActionDigest, j.Action, maxDirectoryBytes); err != nil {
		return nil, rev2.MissingIfGone(err, rev2.MissingBlob{Digest: j.ActionDigest, What: "action_digest"})
	}
	commandDigest, err := digest.FromProto(j.Fn, j.Action.CommandDigest, "action.command_digest")
	if err != nil {
		return nil, err
	}
	if j.InputRoot, err = digest.FromProto(j.Fn, j.Action.InputRootDigest, "action.input_root_digest"); err != nil {
		return nil, err
	}
	j.Command = &repb.Command{}
	if err := storage.GetProto(ctx, s.cas, commandDigest, j.Command, maxDirectoryBytes); err != nil {
		return nil, rev2.MissingIfGone(err, rev2.MissingBlob{Digest: commandDigest, What: "action.command_digest"})
	}
	if err := rev2.CheckCommand(j.Command); err != nil {
		return nil, err
	}
	return s.next.Execute(ctx, j)
}

func assignedDigest(fn digest.Function, d *workerpb.Digest, field string) (digest.Digest, error) {
	if d == nil {
		return digest.Digest{}, status.Errorf(codes.InvalidArgument, "assignment has no %s", field)
	}
	return digest.FromProto(fn, &repb.Digest{Hash: d.Hash, SizeBytes: d.SizeBytes}, field)
}
