package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"
	"unicode/utf8"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/rev2"
	"github.com/paddock-build/paddock/storage"
)

// outputCollector reads an action's outputs from its input root and uploads
// them. Every path is resolved from a descriptor of the input root with
// openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS) and every entry is examined
// with fstatat(AT_SYMLINK_NOFOLLOW): a symlink the action left (or swapped
// in) is recorded as a symlink and never followed, so the worker cannot be
// made to read, or upload, a file outside the input root.
//
// Small blobs (files up to smallFile, Tree protos, stdout and stderr) are
// staged in memory and stored by flush with one FindMissing and, where the
// CAS is a storage.Batcher, batched writes: an action's outputs of many
// small files cost a few requests, not two each. Call flush before the
// result is reported or cached.
type outputCollector struct {
	cas    storage.BlobStore
	fn     digest.Function
	rootFd int
	limits OutputLimits
	format repb.Command_OutputDirectoryFormat // of the command being collected
	// adoption, if set, lets the CAS keep output files as they are.
	adoption *outputAdoption

	files, bytes int64 // counted against limits so far

	// sizeLimit is the command's file size limit (Job.FileSizeLimit);
	// atSizeLimit names the first output file of that size or more.
	sizeLimit   int64
	atSizeLimit string

	staged      map[digest.Digest][]byte
	stagedBytes int64
}

// maxStagedBytes bounds what stage holds before it flushes.
const maxStagedBytes = 16 << 20

// collect fills result's outputs for cmd, whose paths are relative to its
// working directory. Outputs that do not exist are left out.
func (c *outputCollector) collect(ctx context.Context, cmd *repb.Command, result *repb.ActionResult) error {
	rel := func(p string) string { return path.Join(cmd.WorkingDirectory, p) }
	c.format = cmd.OutputDirectoryFormat
	if len(cmd.OutputPaths) > 0 { // REv2 2.1+
		for _, p := range cmd.OutputPaths {
			if err := c.collectPath(ctx, p, rel(p), kindAny, result, false); err != nil {
				return err
			}
		}
		return nil
	}
	for _, p := range cmd.OutputFiles { // REv2 2.0
		if err := c.collectPath(ctx, p, rel(p), kindFile, result, true); err != nil {
			return err
		}
	}
	for _, p := range cmd.OutputDirectories {
		if err := c.collectPath(ctx, p, rel(p), kindDir, result, true); err != nil {
			return err
		}
	}
	return nil
}

type outputKind int

const (
	kindAny outputKind = iota
	kindFile
	kindDir
)

// openBeneath opens p (relative to the root; "." for the root itself)
// with flags, following symlinks only while they stay inside the input
// root: the kernel refuses (EXDEV) an absolute one or one that climbs out,
// and any magic link (/proc/self/…).
func (c *outputCollector) openBeneath(p string, flags int) (int, error) {
	for {
		fd, err := unix.Openat2(c.rootFd, p, &unix.OpenHow{
			Flags:   uint64(flags | unix.O_CLOEXEC),
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
		})
		if err != unix.EAGAIN { // a rename raced the resolution: again
			return fd, err
		}
	}
}

// splitOutput is the directory collectPath opens (beneath the root,
// following symlinks) and the name it looks at in it, never followed, for
// the output declared as declared at rel.
func splitOutput(declared, rel string) (parent, base string) {
	if rel == "" || rel == "." {
		return ".", "." // output_directories [""] in the root: the root itself
	}
	if rev2.IsWholeDirectory(declared) {
		// The working directory itself, reached as the command was:
		// through its symlinks, beneath the root. Split, a symlinked
		// working directory was reported as a symlink with an empty path,
		// which the result's check refuses, on every retry.
		return rel, "."
	}
	parent, base = path.Split(rel)
	if parent == "" {
		return ".", base
	}
	return strings.TrimSuffix(parent, "/"), base
}

// collectPath collects the output declared as declared, at rel from the
// input root. Its parent directories may be symlinks inside the input
// root (a working directory reached through one, say); the output itself
// is never followed: a symlink is reported as one.
func (c *outputCollector) collectPath(ctx context.Context, declared, rel string, kind outputKind, result *repb.ActionResult, legacy bool) error {
	parent, base := splitOutput(declared, rel)
	pfd, err := c.openBeneath(parent, unix.O_RDONLY|unix.O_DIRECTORY)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.EXDEV) {
		// Absent, or reachable only through a symlink that leaves the
		// input root: not collected.
		return nil
	}
	if err != nil {
		return fmt.Errorf("output %q: %w", declared, err)
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); errors.Is(err, unix.ENOENT) {
		return nil
	} else if err != nil {
		return fmt.Errorf("output %q: %w", declared, err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		target, err := readlinkat(pfd, base)
		if err != nil {
			return fmt.Errorf("output %q: %w", declared, err)
		}
		if err := checkSymlinkTarget(declared, target); err != nil {
			return err
		}
		if legacy {
			if err := c.checkLegacyTarget(declared, rel, kind); err != nil {
				return err
			}
		}
		link := &repb.OutputSymlink{Path: declared, Target: target}
		if legacy {
			if kind == kindDir {
				result.OutputDirectorySymlinks = append(result.OutputDirectorySymlinks, link)
			} else {
				result.OutputFileSymlinks = append(result.OutputFileSymlinks, link)
			}
		} else {
			result.OutputSymlinks = append(result.OutputSymlinks, link)
		}
	case unix.S_IFREG:
		if kind == kindDir {
			return status.Errorf(codes.FailedPrecondition, "output directory %q is a regular file", declared)
		}
		if err := c.count(declared, st.Size); err != nil {
			return err
		}
		d, err := c.uploadFile(ctx, pfd, base)
		if err != nil {
			return fmt.Errorf("output %q: %w", declared, err)
		}
		result.OutputFiles = append(result.OutputFiles, &repb.OutputFile{Path: declared, Digest: d.Proto(), IsExecutable: st.Mode&0o111 != 0})
	case unix.S_IFDIR:
		if kind == kindFile {
			return status.Errorf(codes.FailedPrecondition, "output file %q is a directory", declared)
		}
		fd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("output %q: %w", declared, err)
		}
		dir, err := c.outputDirectory(ctx, fd, declared)
		if err != nil {
			return err
		}
		result.OutputDirectories = append(result.OutputDirectories, dir)
	default:
		return status.Errorf(codes.FailedPrecondition, "output %q is neither a file, a directory nor a symlink", declared)
	}
	return nil
}

// directory builds the Directory proto of the open directory fd (and
// closes it), adding its new descendants to t and uploading their files.
func (c *outputCollector) directory(ctx context.Context, fd int, where string, depth int, t *outputTree) (*repb.Directory, error) {
	f := os.NewFile(uintptr(fd), where)
	defer f.Close()
	if depth > c.limits.MaxDepth {
		// Checked before anything below is opened: one descriptor per
		// level, at most MaxDepth of them.
		return nil, status.Errorf(codes.InvalidArgument, "output directory %s is deeper than the worker's limit of %d levels (max_output_depth); the result was not cached", rev2.Quote(where), c.limits.MaxDepth)
	}
	if err := ctx.Err(); err != nil {
		return nil, status.FromContextError(err).Err()
	}
	names, err := t.readNames(f, where)
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	dir := &repb.Directory{}
	for _, name := range names {
		p := path.Join(where, name)
		if !utf8.ValidString(name) {
			return nil, status.Errorf(codes.FailedPrecondition, "output %s holds an entry whose name is not valid UTF-8 (%s): REv2 cannot carry it", rev2.Quote(where), rev2.Quote(strings.ToValidUTF8(name, "\ufffd")))
		}
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return nil, fmt.Errorf("output %q: %w", p, err)
		}
		size := int64(0) // a directory's or a symlink's st_size is not output bytes
		if st.Mode&unix.S_IFMT == unix.S_IFREG {
			size = st.Size
		}
		if err := c.count(p, size); err != nil {
			return nil, err
		}
		switch st.Mode & unix.S_IFMT { // the name is counted into t already (readNames)
		case unix.S_IFREG:
			d, err := c.uploadFile(ctx, fd, name)
			if err != nil {
				return nil, fmt.Errorf("output %q: %w", p, err)
			}
			dir.Files = append(dir.Files, &repb.FileNode{Name: name, Digest: d.Proto(), IsExecutable: st.Mode&0o111 != 0})
		case unix.S_IFLNK:
			target, err := readlinkat(fd, name)
			if err != nil {
				return nil, fmt.Errorf("output %q: %w", p, err)
			}
			if err := checkSymlinkTarget(p, target); err != nil {
				return nil, err
			}
			if err := t.symlinkTarget(p, target); err != nil {
				return nil, err
			}
			dir.Symlinks = append(dir.Symlinks, &repb.SymlinkNode{Name: name, Target: target})
		case unix.S_IFDIR:
			sub, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return nil, fmt.Errorf("output %q: %w", p, err)
			}
			child, err := c.directory(ctx, sub, p, depth+1, t)
			if err != nil {
				return nil, err
			}
			d, err := c.addChild(ctx, t, child)
			if err != nil {
				return nil, fmt.Errorf("output %q: %w", p, err)
			}
			dir.Directories = append(dir.Directories, &repb.DirectoryNode{Name: name, Digest: d.Proto()})
		default:
			// Sockets, FIFOs and devices have no REv2 form. Left out, the
			// tree would be cached as something the action did not make
			// (a local Bazel fails on it too): refused, as at the top.
			return nil, status.Errorf(codes.FailedPrecondition, "output %s holds %s, which is neither a file, a directory nor a symlink: REv2 cannot carry it", rev2.Quote(where), rev2.Quote(p))
		}
	}
	return dir, nil
}

// OutputLimits bound what one action's outputs may be. Past a limit the
// action fails with INVALID_ARGUMENT naming it, and nothing is cached or
// uploaded further.
type OutputLimits struct {
	// MaxDepth bounds how deep an output directory's tree may be. Default
	// 256.
	MaxDepth int
	// MaxFiles bounds the entries (files, directories, symlinks) in all
	// outputs. Default 1,000,000.
	MaxFiles int64
	// MaxBytes bounds the total size of output files, counted by apparent
	// size (a sparse file counts whole: it would be stored whole). Default
	// 4 GiB.
	MaxBytes int64
}

// DefaultOutputLimits is the one place the defaults above are written:
// withDefaults fills zero fields from it, and the worker's config file
// (configs.Worker) starts from it.
func DefaultOutputLimits() OutputLimits {
	return OutputLimits{MaxDepth: 256, MaxFiles: 1_000_000, MaxBytes: 4 << 30}
}

func (l OutputLimits) withDefaults() OutputLimits {
	return OutputLimits(treeLimits(l).withDefaults(treeLimits(DefaultOutputLimits())))
}

// count counts one output entry of size bytes (0 for directories and
// symlinks) against the limits.
func (c *outputCollector) count(p string, size int64) error {
	c.files++
	if c.sizeLimit > 0 && size >= c.sizeLimit && c.atSizeLimit == "" {
		c.atSizeLimit = p
	}
	if c.files > c.limits.MaxFiles {
		return status.Errorf(codes.InvalidArgument, "outputs: more than %d files and directories, the worker's limit (max_output_files), at %s; the result was not cached", c.limits.MaxFiles, rev2.Quote(p))
	}
	if size > 0 {
		c.bytes += size
		if c.bytes > c.limits.MaxBytes {
			return status.Errorf(codes.InvalidArgument, "outputs: more than %d bytes, the worker's limit (max_output_bytes), at %s (%d bytes; sparse files count by their apparent size); the result was not cached", c.limits.MaxBytes, rev2.Quote(p), size)
		}
	}
	return nil
}

// uploadBytes stages b for flush and returns its digest.
func (c *outputCollector) uploadBytes(ctx context.Context, b []byte) (digest.Digest, error) {
	d := digest.FromBytes(c.fn, b)
	if c.staged == nil {
		c.staged = map[digest.Digest][]byte{}
	}
	if _, dup := c.staged[d]; !dup && !d.IsEmpty() {
		c.staged[d] = b
		c.stagedBytes += d.SizeBytes()
	}
	if c.stagedBytes > maxStagedBytes {
		return d, c.flush(ctx)
	}
	return d, nil
}

// flush stores the staged blobs the CAS does not have yet.
func (c *outputCollector) flush(ctx context.Context) error {
	if len(c.staged) == 0 {
		return nil
	}
	ds := make([]digest.Digest, 0, len(c.staged))
	for d := range c.staged {
		ds = append(ds, d)
	}
	missing, err := c.cas.FindMissing(ctx, ds)
	if err != nil {
		return fmt.Errorf("upload outputs: %w", err)
	}
	batcher, _ := c.cas.(storage.Batcher)
	batch := map[digest.Digest][]byte{}
	var size int64
	putBatch := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := batcher.PutMany(ctx, batch)
		batch, size = map[digest.Digest][]byte{}, 0
		return err
	}
	for _, d := range missing {
		data := c.staged[d]
		if batcher == nil || d.SizeBytes() > batcher.MaxBatchBytes()/2 {
			if err := c.cas.Put(ctx, d, bytes.NewReader(data)); err != nil {
				return fmt.Errorf("upload output %s: %w", d, err)
			}
			continue
		}
		if size+d.SizeBytes() > batcher.MaxBatchBytes() {
			if err := putBatch(); err != nil {
				return fmt.Errorf("upload outputs: %w", err)
			}
		}
		batch[d] = data
		size += d.SizeBytes()
	}
	if err := putBatch(); err != nil {
		return fmt.Errorf("upload outputs: %w", err)
	}
	c.staged, c.stagedBytes = nil, 0
	return nil
}

func (c *outputCollector) uploadProto(ctx context.Context, m proto.Message) (digest.Digest, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return digest.Digest{}, err
	}
	return c.uploadBytes(ctx, b)
}

func readlinkat(dirFd int, name string) (string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Readlinkat(dirFd, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}
