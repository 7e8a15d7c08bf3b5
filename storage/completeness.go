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
	"github.com/paddock-build/paddock/internal/decodecost"
	"github.com/paddock-build/paddock/internal/grpcerr"
	"github.com/paddock-build/paddock/rev2"
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
// (it would fail the build instead of re-executing). A result that breaks
// a rule UpdateActionResult holds results to (ValidateActionResult, and
// the output directories' own: checkOutputDirectory) is INVALID_ARGUMENT,
// for UpdateActionResult to refuse and for a lookup to take as a miss: an
// entry written before a rule was added is not served. fn is the digest
// function of the action (UNKNOWN: inferred from each hash).
func CheckComplete(ctx context.Context, cas BlobStore, fn digest.Function, result *repb.ActionResult) error {
	if err := ValidateActionResult(fn, result); err != nil {
		return err
	}
	release, err := HoldMemory(ctx, treeBytes(result))
	if err != nil {
		return err
	}
	defer release()
	want, err := referencedBlobs(ctx, cas, fn, result)
	if err != nil {
		return err
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

// referencedBlobs lists, each once, the blobs result references, reading
// its output directories to list what is inside them.
func referencedBlobs(ctx context.Context, cas BlobStore, fn digest.Function, result *repb.ActionResult) ([]digest.Digest, error) {
	var want []digest.Digest
	wanted := map[digest.Digest]bool{}
	add := func(d *repb.Digest, what string) error {
		if d == nil {
			return nil
		}
		dd, err := digest.FromProto(fn, d, what)
		if err != nil {
			return err
		}
		if !wanted[dd] {
			wanted[dd] = true
			want = append(want, dd)
		}
		return nil
	}
	for i, f := range result.OutputFiles {
		if err := add(f.Digest, fmt.Sprintf("action_result.output_files[%d].digest", i)); err != nil {
			return nil, err
		}
	}
	if err := add(result.StdoutDigest, "action_result.stdout_digest"); err != nil {
		return nil, err
	}
	if err := add(result.StderrDigest, "action_result.stderr_digest"); err != nil {
		return nil, err
	}
	for i, dir := range result.OutputDirectories {
		field := fmt.Sprintf("action_result.output_directories[%d]", i)
		dirs, err := outputDirectories(ctx, cas, fn, dir, field)
		if err != nil {
			return nil, err
		}
		// A client may read either form: the Directory blobs must be
		// there too, even where the Tree already lists their contents.
		if err := add(dir.RootDirectoryDigest, field+".root_directory_digest"); err != nil {
			return nil, err
		}
		for _, d := range dirs {
			for _, f := range d.GetFiles() {
				if err := add(f.Digest, fmt.Sprintf("%s: file %s", field, rev2.Quote(f.Name))); err != nil {
					return nil, err
				}
			}
			if dir.RootDirectoryDigest == nil || dir.TreeDigest == nil {
				continue // no Directory blobs, or every one was read already
			}
			for _, sub := range d.GetDirectories() {
				if err := add(sub.Digest, fmt.Sprintf("%s: directory %s", field, rev2.Quote(sub.Name))); err != nil {
					return nil, err
				}
			}
		}
	}
	return want, nil
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

// outputDirectories returns every Directory of an output directory (field
// names it in errors): from its Tree when it has one, otherwise by reading
// its Directory blobs from root_directory_digest down, each distinct one
// once. One whose blobs are missing is NOT_FOUND (incomplete); one with
// neither form, a malformed digest, or directories that break a rule
// (checkOutputDirectory) is INVALID_ARGUMENT.
func outputDirectories(ctx context.Context, cas BlobStore, fn digest.Function, dir *repb.OutputDirectory, field string) ([]*repb.Directory, error) {
	if dir.TreeDigest != nil || dir.RootDirectoryDigest == nil {
		return treeDirectories(ctx, cas, fn, dir, field)
	}
	root, err := digest.FromProto(fn, dir.RootDirectoryDigest, field+".root_directory_digest")
	if err != nil {
		return nil, err
	}
	type queued struct {
		d     digest.Digest
		where string // its path in the output directory, for messages
	}
	var dirs []*repb.Directory
	seen := map[digest.Digest]bool{root: true}
	queue := []queued{{root, ""}}
	budget := int64(MaxTreeBytes)
	for len(queue) > 0 {
		if len(seen) > maxWalkedDirectories {
			return nil, status.Errorf(codes.NotFound, "%s: more than %d Directory blobs below root_directory_digest, more than this server reads to check a result; store a larger output directory with a tree_digest", field, maxWalkedDirectories)
		}
		q := queue[0]
		queue = queue[1:]
		m := &repb.Directory{}
		if err := GetProto(ctx, cas, q.d, m, budget); err != nil {
			return nil, status.Errorf(codes.NotFound, "%s: directory %s: %s", field, q.d, grpcerr.Convert(err).Message())
		}
		if err := checkOutputDirectory(m, q.where, field+".root_directory_digest"); err != nil {
			return nil, err
		}
		budget -= q.d.SizeBytes()
		dirs = append(dirs, m)
		for _, sub := range m.Directories {
			where := rev2.Join(q.where, sub.Name)
			sd, err := digest.FromProto(fn, sub.Digest, fmt.Sprintf("%s: directory %s", field, rev2.Quote(where)))
			if err != nil {
				return nil, err
			}
			if !seen[sd] {
				seen[sd] = true
				queue = append(queue, queued{sd, where})
			}
		}
	}
	return dirs, nil
}

// treeDirectories returns the directories of an output directory's Tree,
// each checked (checkOutputDirectory), after checking that the Tree's root
// is the directory root_directory_digest names when both are set, as REv2
// requires: otherwise a client reading the Tree and one reading the
// Directory blobs would be given different outputs for the same result.
func treeDirectories(ctx context.Context, cas BlobStore, fn digest.Function, dir *repb.OutputDirectory, field string) ([]*repb.Directory, error) {
	td, err := digest.FromProto(fn, dir.TreeDigest, field+".tree_digest")
	if err != nil {
		return nil, err
	}
	b, err := GetBytes(ctx, cas, td, MaxTreeBytes)
	tree := &repb.Tree{}
	if err == nil {
		err = unmarshalBlob(td, b, tree)
	}
	if err != nil {
		return nil, status.Errorf(codes.NotFound, "%s: tree %s: %s", field, td, grpcerr.Convert(err).Message())
	}
	rootBytes, children := treeFieldBytes(b)
	if dir.RootDirectoryDigest != nil {
		root, err := digest.FromProto(fn, dir.RootDirectoryDigest, field+".root_directory_digest")
		if err != nil {
			return nil, err
		}
		if got := digest.FromBytes(root.Function(), rootBytes); got != root {
			return nil, status.Errorf(codes.InvalidArgument, "%s.root_directory_digest: %s is not the digest of the root directory in the Tree %s (%s); REv2 requires them to match", field, root, td, got)
		}
	}
	if tree.Root == nil {
		tree.Root = &repb.Directory{}
	}
	dirs := append([]*repb.Directory{tree.Root}, tree.Children...)
	for i, d := range dirs {
		where := "root"
		if i > 0 {
			where = fmt.Sprintf("children[%d]", i-1)
		}
		if err := checkOutputDirectory(d, "", fmt.Sprintf("%s.tree_digest: Tree.%s", field, where)); err != nil {
			return nil, err
		}
	}
	if err := checkTreeLinks(fn, dirs, children, field+".tree_digest"); err != nil {
		return nil, err
	}
	return dirs, nil
}

// checkOutputDirectory holds one Directory of an output directory to the
// rule input roots are held to (rev2.CheckDirectory): names are single
// components, sorted, used once, and symlink targets are neither empty
// nor absolute, as Capabilities advertises symlink_absolute_path_strategy
// DISALLOWED. Clients write these outputs into their own trees. where is
// the directory's path in the output directory, field what names it.
func checkOutputDirectory(d *repb.Directory, where, field string) error {
	if err := rev2.CheckDirectory(d, where, rev2.RelativeSymlinksOnly); err != nil {
		return status.Errorf(codes.InvalidArgument, "%s: %s", field, grpcerr.Convert(err).Message())
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
	return unmarshalBlob(d, b, m)
}

// blobDecodeFactor is how many times its size, beyond its size, a blob
// read from the CAS may take once decoded (decodecost counts it). Its
// bytes come from a client as a request's do, and it may be larger: a
// 16 MiB Command of empty environment variables took 820 MB to decode,
// and sixteen Executes naming it took `paddock up` to 5.7 GB, past the
// budget (HoldMemory) that counts blobs at decodedFactor times their size.
// Honest blobs stay below: a Directory of source files counts 2.2 times
// its size, one whose files carry mtimes and modes 4.4 (it takes 1.9), one
// of symlinks with names of a few bytes (a bin/ of links to one tool) 8,
// a Command of short environment variables 7.4. At 5, such blobs of a
// few thousand entries were refused: a 24 KB Directory of 2,000 symlinks
// as an input root, and an action's own output of 3,000 symlinks was
// never served from the cache.
const blobDecodeFactor = 10

// unmarshalBlob parses blob d's bytes b into m; INVALID_ARGUMENT if they
// are not one, or if decoding them would take more than blobDecodeFactor
// times their size.
func unmarshalBlob(d digest.Digest, b []byte, m proto.Message) error {
	if err := decodecost.Check(b, m, blobDecodeFactor); err != nil {
		return status.Errorf(codes.InvalidArgument, "blob %s: %v", d, err)
	}
	if err := proto.Unmarshal(b, m); err != nil {
		return status.Errorf(codes.InvalidArgument, "blob %s is not a valid %s: %v", d, m.ProtoReflect().Descriptor().Name(), err)
	}
	return nil
}

// GetBytes reads a whole blob of at most limit bytes. A larger one is
// INVALID_ARGUMENT: the limit is the server's for that kind of message,
// so asking again can only be refused again, and clients (Bazel among
// them) retry RESOURCE_EXHAUSTED.
func GetBytes(ctx context.Context, cas BlobStore, d digest.Digest, limit int64) ([]byte, error) {
	if d.SizeBytes() > limit {
		return nil, status.Errorf(codes.InvalidArgument, "blob %s is larger than the %d bytes allowed here", d, limit)
	}
	b, err := getBytes(ctx, cas, d)
	if status.Code(err) == codes.DataLoss {
		// Found corrupt with none of it handed out (a store that checks
		// removes its copy): read once more, so that a mirror's other
		// side serves its sound copy. A mirror of two disks answered a
		// batch read, a GetTree and a cached result's check as if the
		// blob were gone while its second side held it (outside probe).
		// Gone now, the blob keeps the error that says why.
		again, err2 := getBytes(ctx, cas, d)
		switch {
		case err2 == nil:
			return again, nil
		case status.Code(err2) != codes.NotFound:
			return nil, err2
		}
	}
	return b, err
}

// getBytes reads d whole, to its end, which a verifying reader checks.
func getBytes(ctx context.Context, cas BlobStore, d digest.Digest) ([]byte, error) {
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
