package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/rev2"
	"github.com/paddock-build/paddock/storage"
)

// outputTree gathers the descendants of one output directory as the
// collector walks it: each distinct Directory once, in the order their
// walks end, so that every directory comes after all of its own
// descendants. Reversed, that order is topological (parents first), which
// is what OutputDirectory.is_topologically_sorted promises a client that
// instantiates the Tree in one pass.
type outputTree struct {
	children []*repb.Directory
	seen     map[digest.Digest]bool
	// bytes bounds the Directory protos built for the tree (see entry).
	bytes int64
}

// treeEntryBytes is what an entry adds to a Directory proto beside its
// name and symlink target: a digest, sizes, tags.
const treeEntryBytes = 96

// symlinkTarget counts the target of the symlink at p into the tree's
// size (its name was counted when read, by readNames), and refuses the
// output once the tree would be past storage.MaxTreeBytes: the action
// cache could never serve a larger Tree, and the worker would hold it all
// in memory (a million symlinks with 4 KB targets were 4 GB of it, within
// max_output_bytes).
func (t *outputTree) symlinkTarget(p, target string) error {
	t.bytes += int64(len(target)) + treeEntryBytes
	if t.bytes > storage.MaxTreeBytes {
		return t.tooLarge(p)
	}
	return nil
}

// tooLarge is the refusal of a Tree past storage.MaxTreeBytes, at p.
func (t *outputTree) tooLarge(p string) error {
	return status.Errorf(codes.InvalidArgument, "outputs: the Tree of the output directory holding %s is over %d bytes (names, symlink targets and digests), more than the action cache can serve; the result was not cached", rev2.Quote(p), storage.MaxTreeBytes)
}

// nameReader reads a directory's names in batches (*os.File).
type nameReader interface {
	Readdirnames(n int) ([]string, error)
}

// readNames reads the names in the open directory f (at where), in
// batches, and counts each into the tree's size as it comes (a symlink's
// target is counted when it is read, by symlinkTarget), so that the output is refused once the names
// read would take the Tree past storage.MaxTreeBytes, not after they are
// all in memory: 950,000 names of 255 bytes grew the worker by 450 MB.
// Counted into the tree at once, an ancestor's names still to be walked
// count while its subdirectories are read: counted only when walked, each
// level of a nested tree could hold nearly the whole bound of names.
func (t *outputTree) readNames(f nameReader, where string) ([]string, error) {
	var names []string
	for {
		batch, err := f.Readdirnames(4096)
		for _, n := range batch {
			t.bytes += int64(len(n)) + treeEntryBytes
		}
		names = append(names, batch...)
		if t.bytes > storage.MaxTreeBytes {
			return nil, t.tooLarge(where)
		}
		if errors.Is(err, io.EOF) || err == nil && len(batch) == 0 {
			return names, nil
		}
		if err != nil {
			return nil, fmt.Errorf("output %q: %w", where, err)
		}
	}
}

// wantsDirectories says whether the command asked for its output
// directories as Directory blobs (Command.output_directory_format); a
// value this worker does not know is read as TREE_ONLY, as the
// specification says. Every output directory gets a Tree, DIRECTORY_ONLY
// included (the specification allows the superset): with it, checking
// that a cached result is complete reads one blob, where walking Directory
// blobs would read one per directory at every cache hit.
func wantsDirectories(f repb.Command_OutputDirectoryFormat) bool {
	return f == repb.Command_DIRECTORY_ONLY || f == repb.Command_TREE_AND_DIRECTORY
}

// addChild records child in t unless an identical Directory is there
// already, stages its blob when the command wants output directories as
// Directory blobs, and returns its digest.
func (c *outputCollector) addChild(ctx context.Context, t *outputTree, child *repb.Directory) (digest.Digest, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(child)
	if err != nil {
		return digest.Digest{}, err
	}
	d := digest.FromBytes(c.fn, b)
	if t.seen[d] {
		return d, nil
	}
	t.seen[d] = true
	t.children = append(t.children, child)
	if wantsDirectories(c.format) {
		if _, err := c.uploadBytes(ctx, b); err != nil {
			return digest.Digest{}, err
		}
	}
	return d, nil
}

// outputDirectory walks the open directory fd (and closes it) and stores
// it as a Tree whose children are deduplicated and topologically sorted
// (encoded in field order, so the record format is_topologically_sorted
// describes holds), and, if the command asked, as Directory blobs with the
// root's digest too.
func (c *outputCollector) outputDirectory(ctx context.Context, fd int, declared string) (*repb.OutputDirectory, error) {
	t := &outputTree{seen: map[digest.Digest]bool{}}
	root, err := c.directory(ctx, fd, declared, 1, t)
	if err != nil {
		return nil, err
	}
	slices.Reverse(t.children)
	td, err := c.uploadProto(ctx, &repb.Tree{Root: root, Children: t.children})
	if err != nil {
		return nil, fmt.Errorf("output %q: %w", declared, err)
	}
	out := &repb.OutputDirectory{Path: declared, TreeDigest: td.Proto(), IsTopologicallySorted: true}
	if wantsDirectories(c.format) {
		rd, err := c.uploadProto(ctx, root)
		if err != nil {
			return nil, fmt.Errorf("output %q: %w", declared, err)
		}
		out.RootDirectoryDigest = rd.Proto()
	}
	return out, nil
}
