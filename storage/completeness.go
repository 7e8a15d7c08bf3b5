package storage

import (
	"context"
	"fmt"
	"io"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/digest"
)

// maxTreeBytes bounds the Tree protos CheckComplete will read into memory.
const maxTreeBytes = 64 << 20

// CheckComplete returns NOT_FOUND unless every blob result references is in
// cas: output files, output directory trees and every file inside them,
// stdout and stderr. The action cache service and the scheduler's cache
// lookup call it so that a client is never handed a result it cannot fetch
// (it would fail the build instead of re-executing). fn is the digest
// function of the request (UNKNOWN: inferred from each hash).
func CheckComplete(ctx context.Context, cas BlobStore, fn digest.Function, result *repb.ActionResult) error {
	var want []digest.Digest
	add := func(d *repb.Digest, what string) error {
		if d == nil {
			return nil
		}
		dd, err := digest.FromProto(fn, d, what)
		if err != nil {
			return status.Errorf(codes.NotFound, "action result is unusable: %s", status.Convert(err).Message())
		}
		want = append(want, dd)
		return nil
	}
	for i, f := range result.OutputFiles {
		if err := add(f.Digest, fmt.Sprintf("output_files[%d] %q", i, f.Path)); err != nil {
			return err
		}
	}
	if err := add(result.StdoutDigest, "stdout_digest"); err != nil {
		return err
	}
	if err := add(result.StderrDigest, "stderr_digest"); err != nil {
		return err
	}
	for i, dir := range result.OutputDirectories {
		what := fmt.Sprintf("output_directories[%d] %q", i, dir.Path)
		td, err := digest.FromProto(fn, dir.TreeDigest, what)
		if err != nil {
			return status.Errorf(codes.NotFound, "action result is unusable: %s", status.Convert(err).Message())
		}
		tree := &repb.Tree{}
		if err := GetProto(ctx, cas, td, tree, maxTreeBytes); err != nil {
			return status.Errorf(codes.NotFound, "%s: tree %s: %s", what, td, status.Convert(err).Message())
		}
		for _, d := range append([]*repb.Directory{tree.Root}, tree.Children...) {
			for _, f := range d.GetFiles() {
				if err := add(f.Digest, what); err != nil {
					return err
				}
			}
		}
	}
	missing, err := cas.FindMissing(ctx, want)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return status.Errorf(codes.NotFound, "action result references %d missing blob(s), e.g. %s", len(missing), missing[0])
	}
	return nil
}

// GetProto reads blob d from cas and unmarshals it into m. Blobs larger than
// limit are refused with RESOURCE_EXHAUSTED rather than read into memory.
func GetProto(ctx context.Context, cas BlobStore, d digest.Digest, m proto.Message, limit int64) error {
	b, err := GetBytes(ctx, cas, d, limit)
	if err != nil {
		return err
	}
	if err := proto.Unmarshal(b, m); err != nil {
		return status.Errorf(codes.InvalidArgument, "blob %s is not a valid %s: %v", d, m.ProtoReflect().Descriptor().Name(), err)
	}
	return nil
}

// GetBytes reads a whole blob of at most limit bytes.
func GetBytes(ctx context.Context, cas BlobStore, d digest.Digest, limit int64) ([]byte, error) {
	if d.SizeBytes() > limit {
		return nil, status.Errorf(codes.ResourceExhausted, "blob %s is larger than the %d bytes allowed here", d, limit)
	}
	r, err := cas.Get(ctx, d, 0)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b := make([]byte, d.SizeBytes())
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("read blob %s: %w", d, err)
	}
	// Drain to EOF so that a verifying reader reports corruption.
	if n, err := r.Read(make([]byte, 1)); n != 0 || (err != nil && err != io.EOF) {
		if err == nil {
			err = status.Errorf(codes.DataLoss, "blob %s is longer than its digest says", d)
		}
		return nil, err
	}
	return b, nil
}
