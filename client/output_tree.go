package client

import (
	"context"
	"fmt"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/rev2"
	"github.com/paddock-build/paddock/storage"
)

// plannedDir is an output directory whose Tree has been fetched and
// checked: every Directory reachable from root is valid, every
// subdirectory digest is in children, every symlink target stays inside
// the working directory, and entries is what writing it creates.
type plannedDir struct {
	path     string
	root     *repb.Directory
	children map[digest.Digest]*repb.Directory
	entries  int
}

// maxTreeDirectories bounds the Directory blobs treeOf reads.
const maxTreeDirectories = 1 << 20

// maxTreeDepth bounds the recursion over a server's Tree.
const maxTreeDepth = 256

// planDir fetches and checks output directory d; budget is how many
// entries it may still expand to.
func (c *Client) planDir(ctx context.Context, declared map[string]bool, d *repb.OutputDirectory, budget int) (plannedDir, error) {
	p, err := cleanDeclared("output directory", d.Path, declared)
	if err != nil {
		return plannedDir{}, err
	}
	tree, err := c.treeOf(ctx, p, d)
	if err != nil {
		return plannedDir{}, err
	}
	if tree.Root == nil {
		return plannedDir{}, status.Errorf(codes.InvalidArgument, "output directory %q: the tree has no root", p)
	}
	pd := plannedDir{path: p, root: tree.Root, children: map[digest.Digest]*repb.Directory{}}
	for _, ch := range tree.Children {
		pd.children[ProtoBlob(ch).Digest] = ch
	}
	if err := pd.checkDirectories(); err != nil {
		return plannedDir{}, err
	}
	if pd.entries, err = pd.count(pd.root, map[digest.Digest]int{}, budget, 0); err != nil {
		return plannedDir{}, err
	}
	if pd.entries > budget {
		return plannedDir{}, status.Errorf(codes.ResourceExhausted, "output directory %q: the result holds more than %d files, directories and symlinks (shared subtrees counted where each appears); nothing was written", p, MaxOutputEntries)
	}
	return pd, pd.checkLinks(ctx, p, pd.root)
}

// child returns the Directory a node names, or an error if the tree
// lacks it.
func (pd plannedDir) child(where string, n *repb.DirectoryNode) (digest.Digest, *repb.Directory, error) {
	d, err := digest.FromProto(repb.DigestFunction_SHA256, n.Digest, fmt.Sprintf("output directory %q", where))
	if err != nil {
		return digest.Digest{}, nil, err
	}
	ch := pd.children[d]
	if ch == nil {
		return digest.Digest{}, nil, status.Errorf(codes.InvalidArgument, "output directory %q: the tree lacks %s", where, d)
	}
	return d, ch, nil
}

// checkDirectories validates every distinct Directory reachable from the
// root once, as the worker validates an input root (rev2.CheckDirectory:
// single-component names, sorted, no name used twice across files,
// directories and symlinks), with every digest valid and present.
func (pd plannedDir) checkDirectories() error {
	seen := map[digest.Digest]bool{}
	type item struct {
		where string
		dir   *repb.Directory
	}
	queue := []item{{pd.path, pd.root}}
	for len(queue) > 0 {
		it := queue[0]
		queue = queue[1:]
		if err := rev2.CheckDirectory(it.dir, it.where, rev2.AnySymlinks); err != nil {
			return fmt.Errorf("output directory %q: %w", pd.path, err)
		}
		for _, f := range it.dir.Files {
			if _, err := digest.FromProto(repb.DigestFunction_SHA256, f.Digest, fmt.Sprintf("output file %q", rev2.Join(it.where, f.Name))); err != nil {
				return err
			}
		}
		for _, sub := range it.dir.Directories {
			where := rev2.Join(it.where, sub.Name)
			d, ch, err := pd.child(where, sub)
			if err != nil {
				return err
			}
			if !seen[d] {
				seen[d] = true
				queue = append(queue, item{where, ch})
			}
		}
	}
	return nil
}

// count returns how many entries dir expands to, each shared subtree
// counted wherever it appears but computed once (memo), stopping as soon
// as the count passes budget.
func (pd plannedDir) count(dir *repb.Directory, memo map[digest.Digest]int, budget, depth int) (int, error) {
	if depth > maxTreeDepth {
		return 0, status.Errorf(codes.InvalidArgument, "output directory %q: nested deeper than %d", pd.path, maxTreeDepth)
	}
	n := len(dir.Files) + len(dir.Symlinks) + len(dir.Directories)
	for _, sub := range dir.Directories {
		if n > budget {
			return n, nil
		}
		d, ch, err := pd.child(pd.path, sub)
		if err != nil {
			return 0, err
		}
		m, ok := memo[d]
		if !ok {
			if m, err = pd.count(ch, memo, budget, depth+1); err != nil {
				return 0, err
			}
			memo[d] = m
		}
		n += m
	}
	return n, nil
}

// checkLinks checks every symlink's target where it will be written. It
// walks the expanded tree, which count has bounded in size and depth.
func (pd plannedDir) checkLinks(ctx context.Context, where string, dir *repb.Directory) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, l := range dir.Symlinks {
		if err := CheckLinkTarget(where+"/"+l.Name, l.Target); err != nil {
			return fmt.Errorf("output directory %q: %w", pd.path, err)
		}
	}
	for _, sub := range dir.Directories {
		_, ch, err := pd.child(where, sub)
		if err != nil {
			return err
		}
		if err := pd.checkLinks(ctx, where+"/"+sub.Name, ch); err != nil {
			return err
		}
	}
	return nil
}

// treeOf reads output directory d as a Tree: its tree_digest, or, for a
// result stored as Directory blobs only (output_directory_format
// DIRECTORY_ONLY), each Directory from root_directory_digest down, at most
// maxTreeDirectories of them. Either way at most storage.MaxTreeBytes are
// held in memory, the bound the server keeps too.
func (c *Client) treeOf(ctx context.Context, p string, d *repb.OutputDirectory) (*repb.Tree, error) {
	tree := &repb.Tree{}
	field := fmt.Sprintf("output directory %q", p)
	if d.TreeDigest != nil || d.RootDirectoryDigest == nil {
		td, err := digest.FromProto(repb.DigestFunction_SHA256, d.TreeDigest, field+" tree_digest")
		if err != nil {
			return nil, err
		}
		if err := c.ReadProto(ctx, td, tree); err != nil {
			return nil, fmt.Errorf("%s: %w", field, err)
		}
		return tree, nil
	}
	root, err := digest.FromProto(repb.DigestFunction_SHA256, d.RootDirectoryDigest, field+" root_directory_digest")
	if err != nil {
		return nil, err
	}
	seen := map[digest.Digest]bool{root: true}
	queue := []digest.Digest{root}
	budget := int64(storage.MaxTreeBytes)
	for len(queue) > 0 {
		if len(seen) > maxTreeDirectories {
			return nil, status.Errorf(codes.ResourceExhausted, "%s: more than %d directories", field, maxTreeDirectories)
		}
		if budget -= queue[0].SizeBytes(); budget < 0 {
			return nil, status.Errorf(codes.ResourceExhausted, "%s: its Directory blobs are over %d bytes together", field, storage.MaxTreeBytes)
		}
		dir := &repb.Directory{}
		if err := c.ReadProto(ctx, queue[0], dir); err != nil {
			return nil, fmt.Errorf("%s: %w", field, err)
		}
		if tree.Root == nil {
			tree.Root = dir
		} else {
			tree.Children = append(tree.Children, dir)
		}
		queue = queue[1:]
		for _, sub := range dir.Directories {
			sd, err := digest.FromProto(repb.DigestFunction_SHA256, sub.Digest, field+" "+rev2.Quote(sub.Name))
			if err != nil {
				return nil, err
			}
			if !seen[sd] {
				seen[sd] = true
				queue = append(queue, sd)
			}
		}
	}
	return tree, nil
}
