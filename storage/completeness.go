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

// MaxTreeBytes bounds what CheckComplete reads into memory for one output
// directory: its Tree proto, or all its Directory blobs together. A larger
// one could never be served from the cache, so workers refuse to build it.
const MaxTreeBytes = 64 << 20

// maxWalkedDirectories bounds the Directory blobs CheckComplete reads for
// an output directory that has no Tree. Each is a read of its own, at
// every cache hit of the result (100,000 took 1.6 s on a 2-vCPU machine),
// so a result of many small directories uploaded once would cost the
// server seconds per lookup. Paddock's workers always store a Tree too;
// a client that uploads results without one is held to this bound.
const maxWalkedDirectories = 10_000

// CheckComplete returns NOT_FOUND unless every blob result references is in
// cas: output files, output directory trees and every file inside them,
// stdout and stderr. The action cache service and the scheduler's cache
// lookup call it so that a client is never handed a result it cannot fetch
// (it would fail the build instead of re-executing). fn is the digest
// function of the request (UNKNOWN: inferred from each hash).
func CheckComplete(ctx context.Context, cas BlobStore, fn digest.Function, result *repb.ActionResult) error {
	release, err := HoldMemory(ctx, treeBytes(result))
	if err != nil {
		return err
	}
	defer release()
	var want []digest.Digest
	wanted := map[digest.Digest]bool{}
	add := func(d *repb.Digest, what string) error {
		if d == nil {
			return nil
		}
		dd, err := digest.FromProto(fn, d, what)
		if err != nil {
			return status.Errorf(codes.NotFound, "action result is unusable: %s", status.Convert(err).Message())
		}
		if !wanted[dd] {
			wanted[dd] = true
			want = append(want, dd)
		}
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
		dirs, err := outputDirectories(ctx, cas, fn, dir, what)
		if err != nil {
			return err
		}
		if dir.RootDirectoryDigest != nil {
			// A client may read either form: the Directory blobs must be
			// there too, even where the Tree already lists their contents.
			if err := add(dir.RootDirectoryDigest, what+" root_directory_digest"); err != nil {
				return err
			}
		}
		for _, d := range dirs {
			for _, f := range d.GetFiles() {
				if err := add(f.Digest, what); err != nil {
					return err
				}
			}
			if dir.RootDirectoryDigest == nil || dir.TreeDigest == nil {
				continue // no Directory blobs, or every one was read above
			}
			for _, sub := range d.GetDirectories() {
				if err := add(sub.Digest, what); err != nil {
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

// treeBytes is what CheckComplete reads into memory for result's output
// directories, as far as their digests tell before reading: each Tree's
// size, or for a directory without one, the most its walk may read.
func treeBytes(result *repb.ActionResult) int64 {
	var n int64
	for _, dir := range result.OutputDirectories {
		switch {
		case dir.TreeDigest != nil:
			n += min(max(dir.TreeDigest.SizeBytes, 0), MaxTreeBytes)
		case dir.RootDirectoryDigest != nil:
			n += MaxTreeBytes
		}
	}
	return n
}

// outputDirectories returns every Directory of an output directory: from
// its Tree when it has one, otherwise by reading its Directory blobs from
// root_directory_digest down, each distinct one once. A result with
// neither form, or one whose blobs are missing, is NOT_FOUND (unusable).
func outputDirectories(ctx context.Context, cas BlobStore, fn digest.Function, dir *repb.OutputDirectory, what string) ([]*repb.Directory, error) {
	unusable := func(err error) error {
		return status.Errorf(codes.NotFound, "action result is unusable: %s", status.Convert(err).Message())
	}
	if dir.TreeDigest != nil || dir.RootDirectoryDigest == nil {
		td, err := digest.FromProto(fn, dir.TreeDigest, what+" tree_digest")
		if err != nil {
			return nil, unusable(err)
		}
		tree := &repb.Tree{}
		if err := GetProto(ctx, cas, td, tree, MaxTreeBytes); err != nil {
			return nil, status.Errorf(codes.NotFound, "%s: tree %s: %s", what, td, status.Convert(err).Message())
		}
		return append([]*repb.Directory{tree.Root}, tree.Children...), nil
	}
	root, err := digest.FromProto(fn, dir.RootDirectoryDigest, what+" root_directory_digest")
	if err != nil {
		return nil, unusable(err)
	}
	var dirs []*repb.Directory
	seen := map[digest.Digest]bool{root: true}
	queue := []digest.Digest{root}
	budget := int64(MaxTreeBytes)
	for len(queue) > 0 {
		if len(seen) > maxWalkedDirectories {
			return nil, status.Errorf(codes.NotFound, "%s: more than %d Directory blobs below root_directory_digest, more than this server reads to check a result; store a larger output directory with a tree_digest", what, maxWalkedDirectories)
		}
		d := queue[0]
		queue = queue[1:]
		m := &repb.Directory{}
		if err := GetProto(ctx, cas, d, m, budget); err != nil {
			return nil, status.Errorf(codes.NotFound, "%s: directory %s: %s", what, d, status.Convert(err).Message())
		}
		budget -= d.SizeBytes()
		dirs = append(dirs, m)
		for _, sub := range m.Directories {
			sd, err := digest.FromProto(fn, sub.Digest, what)
			if err != nil {
				return nil, unusable(err)
			}
			if !seen[sd] {
				seen[sd] = true
				queue = append(queue, sd)
			}
		}
	}
	return dirs, nil
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
