package worker

import (
	"context"
	"fmt"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/rev2"
)

// InputLimits bound an action's input root as its Directory blobs expand
// it, each reuse of a digest counted again: a few kilobytes of Directory
// blobs can describe millions of inodes (a Merkle bomb). The expanded size
// is computed before anything is created, and a tree past a limit is
// refused with INVALID_ARGUMENT.
type InputLimits struct {
	// MaxDepth bounds the nesting of directories. Default 256.
	MaxDepth int
	// MaxFiles bounds the entries (files, directories, symlinks).
	// Default 2,000,000.
	MaxFiles int64
	// MaxBytes bounds the total size of the files. Default 64 GiB.
	MaxBytes int64
}

// DefaultInputLimits is the one place the defaults above are written:
// withDefaults fills zero fields from it, and the worker's config file
// (configs.Worker) starts from it.
func DefaultInputLimits() InputLimits {
	return InputLimits{MaxDepth: 256, MaxFiles: 2_000_000, MaxBytes: 64 << 30}
}

func (l InputLimits) withDefaults() InputLimits {
	return InputLimits(treeLimits(l).withDefaults(treeLimits(DefaultInputLimits())))
}

// treeSize is a subtree's expanded size: its entries, the bytes of its
// files, and its height in directory levels.
type treeSize struct {
	files, bytes int64
	height       int
}

// sizer computes expanded sizes, each distinct Directory once.
type sizer struct {
	b      *inputRootBuilder
	fn     digest.Function
	limits InputLimits
	part   string // the action's CAS partition
	memo   map[digest.Digest]walkedDir
	// fetched are the Directories read from the CAS rather than the
	// cache: they are cached only once the whole tree has passed.
	fetched []digest.Digest
}

// walkedDir is a Directory of a tree that checkExpanded walked, and its
// subtree's expanded size. dir is nil for a Directory missing from the CAS.
type walkedDir struct {
	dir  *repb.Directory
	size treeSize
}

// checkExpanded refuses root if its expanded tree is past b.limits.
// Directory blobs missing from the CAS count as empty here; the build
// reports them, with the missing files, as MISSING. Recursion is bounded
// by MaxDepth: deeper is refused before it is descended.
//
// It returns every distinct Directory of the tree by digest, for
// createTree to lay out without reading the cache again. Those it read
// from the CAS are added to b.dirs only once the whole tree has passed, so
// a refused tree's Directories hold no memory after it is refused (kept
// in the cache, 50 refused actions naming a 16 MB Directory each held
// 2.9 GB).
func (b *inputRootBuilder) checkExpanded(ctx context.Context, fn digest.Function, root digest.Digest) (map[digest.Digest]walkedDir, error) {
	s := &sizer{b: b, fn: fn, limits: b.limits, part: b.files.partition(ctx), memo: map[digest.Digest]walkedDir{}}
	if _, err := s.size(ctx, root, "", 0); err != nil {
		return nil, err
	}
	for _, d := range s.fetched {
		b.dirs.add(s.part, d, s.memo[d].dir)
	}
	return s.memo, nil
}

func (s *sizer) size(ctx context.Context, d digest.Digest, where string, depth int) (treeSize, error) {
	if w, ok := s.memo[d]; ok {
		return w.size, s.check(w.size, where, depth)
	}
	if depth > s.limits.MaxDepth {
		return treeSize{}, s.refuse(where, fmt.Sprintf("deeper than %d levels (max_input_depth)", s.limits.MaxDepth))
	}
	if err := ctx.Err(); err != nil {
		return treeSize{}, status.FromContextError(err).Err()
	}
	dir, ok := s.b.dirs.get(s.part, d)
	if !ok {
		var err error
		dir, err = fetchDirectory(ctx, s.b.cas, d)
		if rev2.Gone(err) { // not in the CAS, or found corrupt there
			s.memo[d] = walkedDir{}
			return treeSize{}, nil
		}
		if err != nil {
			return treeSize{}, fmt.Errorf("fetch input directory %s: %w", describeDir(where, d), err)
		}
		s.fetched = append(s.fetched, d)
	}
	ts := treeSize{files: int64(len(dir.Files) + len(dir.Symlinks) + len(dir.Directories))}
	for _, f := range dir.Files {
		// Compared before it is added: a size near the largest int64
		// would wrap the sum around and hide what came before.
		if size := max(0, f.GetDigest().GetSizeBytes()); size > s.limits.MaxBytes-ts.bytes {
			return ts, s.refuse(where, fmt.Sprintf("more than %d bytes of files (max_input_bytes)", s.limits.MaxBytes))
		} else {
			ts.bytes += size
		}
	}
	for _, sub := range dir.Directories {
		sd, err := digest.FromProto(s.fn, sub.Digest, "input directory "+rev2.Join(where, sub.Name))
		if err != nil {
			return ts, err
		}
		child, err := s.size(ctx, sd, rev2.Join(where, sub.Name), depth+1)
		if err != nil {
			return ts, err
		}
		ts.files += child.files
		ts.bytes = min(ts.bytes+child.bytes, s.limits.MaxBytes+1) // each is at most MaxBytes: no wrap
		ts.height = max(ts.height, child.height+1)
		if err := s.check(ts, where, depth); err != nil {
			return ts, err
		}
	}
	s.memo[d] = walkedDir{dir, ts}
	return ts, s.check(ts, where, depth)
}

// check refuses a subtree at depth whose size is past a limit.
func (s *sizer) check(ts treeSize, where string, depth int) error {
	switch {
	case depth+ts.height > s.limits.MaxDepth:
		return s.refuse(where, fmt.Sprintf("deeper than %d levels (max_input_depth)", s.limits.MaxDepth))
	case ts.files > s.limits.MaxFiles:
		return s.refuse(where, fmt.Sprintf("more than %d files and directories (max_input_files)", s.limits.MaxFiles))
	case ts.bytes > s.limits.MaxBytes:
		return s.refuse(where, fmt.Sprintf("more than %d bytes of files (max_input_bytes)", s.limits.MaxBytes))
	}
	return nil
}

// describeDir names the Directory d found at where in an input root for
// a message: a name that is not UTF-8, say, fails its whole blob, and its
// digest alone did not tell the client where it was.
func describeDir(where string, d digest.Digest) string {
	if where == "" {
		return "(the root) " + d.String()
	}
	return rev2.Quote(where) + " " + d.String()
}

func (s *sizer) refuse(where, what string) error {
	at := ""
	if where != "" {
		at = " at " + rev2.Quote(where)
	}
	return status.Errorf(codes.InvalidArgument, "input root: expands to %s%s, past the worker's limit; nothing was created", what, at)
}
