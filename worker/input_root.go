package worker

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/rev2"
	"github.com/paddock-build/paddock/storage"
)

// inputRootBuilder materialises an input root: directories created with
// mode 0755, files hard-linked from the FileCache, symlinks created as
// given (never followed by the worker).
type inputRootBuilder struct {
	cas         storage.BlobStore
	files       *FileCache
	dirs        *directoryCache
	pool        *dirPool // directories to take before making any; nil: none
	parallelism int
	limits      InputLimits
	casBytes    int64 // Options.CASBytes
}

type fileJob struct {
	d    digest.Digest
	exec bool
	path string // where it goes
	rel  string // the same, inside the tree, for messages
}

// build creates the tree of root under dst (an existing empty directory).
// Blobs missing from the CAS make it fail with FAILED_PRECONDITION and a
// PreconditionFailure listing each as MISSING, as the spec asks.
func (b *inputRootBuilder) build(ctx context.Context, fn digest.Function, root digest.Digest, dst string) (files int, err error) {
	tree, err := b.checkExpanded(ctx, fn, root)
	if err != nil {
		return 0, err
	}
	jobs, missing, err := createTree(ctx, fn, tree, root, dst, b.pool)
	if err != nil {
		return 0, err
	}
	missingFiles, err := b.linkFiles(ctx, jobs)
	if err != nil {
		return 0, err
	}
	if missing = append(missing, missingFiles...); len(missing) > 0 {
		if n := distinctBytes(jobs); b.casBytes > 0 && n > b.casBytes {
			return 0, status.Errorf(codes.ResourceExhausted, "input root: its distinct files take %d bytes, more than the CAS holds (%d bytes, storage.max_bytes): they cannot all be stored at once, and %d are missing", n, b.casBytes, len(missing))
		}
		return 0, rev2.MissingDigests(missing)
	}
	return len(jobs), nil
}

// distinctBytes is the size of jobs' files, each blob counted once.
func distinctBytes(jobs []fileJob) int64 {
	seen := make(map[digest.Digest]bool, len(jobs))
	var n int64
	for _, j := range jobs {
		if !seen[j.d] {
			seen[j.d] = true
			n += j.d.SizeBytes()
		}
	}
	return n
}

// treeItem is a directory of the tree still to create: its digest and the
// path it goes to.
type treeItem struct {
	d    digest.Digest
	path string
}

// createTree creates root's directories and symlinks under dst, breadth
// first, checking each Directory (rev2), and returns the files to link and
// the Directory blobs missing from the CAS. tree is root's Directories, as
// checkExpanded walked them. Directories come from pool first.
func createTree(ctx context.Context, fn digest.Function, tree map[digest.Digest]walkedDir, root digest.Digest, dst string, pool *dirPool) ([]fileJob, []digest.Digest, error) {
	var jobs []fileJob
	var missing []digest.Digest
	queue := []treeItem{{root, dst}}
	for len(queue) > 0 {
		if err := ctx.Err(); err != nil {
			// Cancelled: stop creating at once; the build directory is
			// removed in the background.
			return nil, nil, status.FromContextError(err).Err()
		}
		it := queue[0]
		queue = queue[1:]
		w, ok := tree[it.d]
		if !ok {
			// checkExpanded walked every Directory of a tree it passed.
			return nil, nil, status.Errorf(codes.Internal, "input directory %s was not walked", it.d)
		}
		if w.dir == nil {
			missing = append(missing, it.d)
			continue
		}
		where, _ := filepath.Rel(dst, it.path)
		if where == "." {
			where = ""
		}
		files, subs, err := createEntries(fn, w.dir, it.path, where, pool)
		if err != nil {
			return nil, nil, err
		}
		jobs = append(jobs, files...)
		queue = append(queue, subs...)
	}
	return jobs, missing, nil
}

// createEntries creates the symlinks and subdirectories of dir (found at
// where in the tree) in path, and returns its files to link and its
// subdirectories to fill.
func createEntries(fn digest.Function, dir *repb.Directory, path, where string, pool *dirPool) ([]fileJob, []treeItem, error) {
	if err := rev2.CheckDirectory(dir, where, rev2.RelativeSymlinksOnly); err != nil {
		return nil, nil, err
	}
	if err := rev2.CheckNameLengths(dir, where); err != nil {
		return nil, nil, err
	}
	var jobs []fileJob
	var subs []treeItem
	for _, f := range dir.Files {
		d, err := digest.FromProto(fn, f.Digest, "input file "+rev2.Join(where, f.Name))
		if err != nil {
			return nil, nil, err
		}
		p := filepath.Join(path, f.Name)
		if len(p) >= unix.PathMax {
			// link(2) would refuse it, after the file was fetched into
			// the cache for nothing; and refused there, it was INTERNAL.
			return nil, nil, createError(syscall.ENAMETOOLONG, "file", rev2.Join(where, f.Name))
		}
		jobs = append(jobs, fileJob{d, f.IsExecutable, p, rev2.Join(where, f.Name)})
	}
	for _, s := range dir.Symlinks {
		if err := os.Symlink(s.Target, filepath.Join(path, s.Name)); err != nil {
			return nil, nil, createError(err, "symlink", rev2.Join(where, s.Name))
		}
	}
	for _, sub := range dir.Directories {
		d, err := digest.FromProto(fn, sub.Digest, "input directory "+rev2.Join(where, sub.Name))
		if err != nil {
			return nil, nil, err
		}
		p := filepath.Join(path, sub.Name)
		if err := pool.mkdir(p); err != nil {
			return nil, nil, createError(err, "directory", rev2.Join(where, sub.Name))
		}
		subs = append(subs, treeItem{d, p})
	}
	return jobs, subs, nil
}

// linkFiles links the input files from the file cache, at most
// b.parallelism at once, and returns those missing from the CAS.
func (b *inputRootBuilder) linkFiles(ctx context.Context, jobs []fileJob) ([]digest.Digest, error) {
	refs := make([]FileRef, len(jobs))
	for i, j := range jobs {
		refs[i] = FileRef{j.d, j.exec}
	}
	// An input larger than the whole cache is kept until the root is
	// built, not dropped after its first link: its other names in the
	// root link the same file.
	defer b.files.Hold()()
	if err := b.files.Prefetch(ctx, refs); err != nil {
		return nil, fmt.Errorf("fetch input files: %w", err)
	}
	var mu sync.Mutex
	var missing []digest.Digest
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(b.parallelism)
	for _, j := range jobs {
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return status.FromContextError(err).Err() // cancelled: link no more
			}
			err := b.files.Link(gctx, j.d, j.exec, j.path)
			if rev2.Gone(err) { // not in the CAS, or found corrupt there
				mu.Lock()
				missing = append(missing, j.d)
				mu.Unlock()
				return nil
			}
			if err != nil {
				return status.Errorf(status.Code(err), "input file %s: %s", rev2.Quote(j.rel), status.Convert(err).Message())
			}
			return nil
		})
	}
	return missing, g.Wait()
}

// createError explains a failure to create an input: a name used twice in
// one directory is the client's error, a full disk the worker's.
func createError(err error, what, p string) error {
	switch {
	case errors.Is(err, fs.ErrExist):
		return status.Errorf(codes.InvalidArgument, "input root: %s %s: the name is used twice", what, rev2.Quote(p))
	case isDiskFull(err):
		return status.Errorf(codes.ResourceExhausted, "input root: %s %s: the worker's disk is full", what, rev2.Quote(p))
	case errors.Is(err, syscall.ENAMETOOLONG):
		// A client's tree of long names, nested deep: its paths are
		// longer than the kernel's PATH_MAX (4096 bytes), with the
		// build directory before them.
		return status.Errorf(codes.InvalidArgument, "input root: %s %s: the path is too long (with the worker's build directory, past the kernel's 4096 bytes)", what, rev2.Quote(p))
	}
	// The error's own text would name the host path of the build
	// directory: give only the errno.
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return status.Errorf(codes.Internal, "input root: %s %s: %v", what, rev2.Quote(p), errno)
	}
	return status.Errorf(codes.Internal, "input root: %s %s: cannot create it", what, rev2.Quote(p))
}
