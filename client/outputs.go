package client

import (
	"context"
	"fmt"
	"os"
	"path"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/digest"
)

// WriteOutputs writes an ActionResult's output files, directories and
// symlinks under dir, the local counterpart of the action's working
// directory. Every path comes from the server and is treated as hostile:
// it must be relative and stay inside dir (enforced by os.Root, so a
// symlink cannot lead a write out either). Each file is written to a
// temporary name and renamed into place, so a reader never sees half a
// file.
func (c *Client) WriteOutputs(ctx context.Context, dir string, r *repb.ActionResult) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	w := outputWriter{c: c, root: root}
	for _, f := range r.OutputFiles {
		if err := w.file(ctx, f.Path, f.Digest, f.Contents, f.IsExecutable); err != nil {
			return err
		}
	}
	for _, d := range r.OutputDirectories {
		if err := w.directory(ctx, d); err != nil {
			return err
		}
	}
	links := append(append(append([]*repb.OutputSymlink(nil), r.OutputSymlinks...), r.OutputFileSymlinks...), r.OutputDirectorySymlinks...)
	for _, l := range links {
		if err := w.symlink(l.Path, l.Target); err != nil {
			return err
		}
	}
	return nil
}

type outputWriter struct {
	c    *Client
	root *os.Root
}

// clean checks a path from the server and returns it slash-joined.
func clean(field, p string) (string, error) {
	parts, err := CleanPath(p)
	if err != nil {
		return "", fmt.Errorf("result %s: %w", field, err)
	}
	return strings.Join(parts, "/"), nil
}

func (w outputWriter) file(ctx context.Context, p string, d *repb.Digest, inline []byte, executable bool) error {
	p, err := clean("output file", p)
	if err != nil {
		return err
	}
	data := inline
	if len(data) == 0 && d.GetSizeBytes() > 0 {
		dg, err := digest.FromProto(repb.DigestFunction_SHA256, d, "output file "+p)
		if err != nil {
			return err
		}
		if data, err = w.c.Read(ctx, dg); err != nil {
			return fmt.Errorf("output %s: %w", p, err)
		}
	}
	mode := os.FileMode(0o644)
	if executable {
		mode = 0o755
	}
	return w.write(p, data, mode)
}

// write puts data at p atomically, creating parent directories.
func (w outputWriter) write(p string, data []byte, mode os.FileMode) error {
	if dir := path.Dir(p); dir != "." {
		if err := w.root.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("output %s: %w", p, err)
		}
	}
	tmp := path.Join(path.Dir(p), ".paddock-tmp-"+path.Base(p))
	w.root.Remove(tmp)
	f, err := w.root.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return fmt.Errorf("output %s: %w", p, err)
	}
	_, werr := f.Write(data)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = w.root.Chmod(tmp, mode) // the umask may have cut bits
	}
	if werr == nil {
		werr = w.root.Rename(tmp, p)
	}
	if werr != nil {
		w.root.Remove(tmp)
		return fmt.Errorf("output %s: %w", p, werr)
	}
	return nil
}

func (w outputWriter) symlink(p, target string) error {
	p, err := clean("output symlink", p)
	if err != nil {
		return err
	}
	if dir := path.Dir(p); dir != "." {
		if err := w.root.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("output %s: %w", p, err)
		}
	}
	w.root.Remove(p)
	if err := w.root.Symlink(target, p); err != nil {
		return fmt.Errorf("output %s: %w", p, err)
	}
	return nil
}

// directory replaces the directory at d.Path with the Tree the server
// reports.
func (w outputWriter) directory(ctx context.Context, d *repb.OutputDirectory) error {
	p, err := clean("output directory", d.Path)
	if err != nil {
		return err
	}
	tree, err := w.treeOf(ctx, p, d)
	if err != nil {
		return err
	}
	children := map[digest.Digest]*repb.Directory{}
	for _, ch := range tree.Children {
		children[ProtoBlob(ch).Digest] = ch
	}
	if err := w.root.RemoveAll(p); err != nil {
		return fmt.Errorf("output %s: %w", p, err)
	}
	return w.tree(ctx, p, tree.Root, children, 0)
}

// treeOf reads output directory d as a Tree: its tree_digest, or, for a
// result stored as Directory blobs only (output_directory_format
// DIRECTORY_ONLY), each Directory from root_directory_digest down, at most
// maxTreeDirectories of them.
func (w outputWriter) treeOf(ctx context.Context, p string, d *repb.OutputDirectory) (*repb.Tree, error) {
	tree := &repb.Tree{}
	if d.TreeDigest != nil || d.RootDirectoryDigest == nil {
		td, err := digest.FromProto(repb.DigestFunction_SHA256, d.TreeDigest, "output directory "+p+" tree_digest")
		if err != nil {
			return nil, err
		}
		if err := w.c.ReadProto(ctx, td, tree); err != nil {
			return nil, fmt.Errorf("output directory %s: %w", p, err)
		}
		return tree, nil
	}
	root, err := digest.FromProto(repb.DigestFunction_SHA256, d.RootDirectoryDigest, "output directory "+p+" root_directory_digest")
	if err != nil {
		return nil, err
	}
	seen := map[digest.Digest]bool{root: true}
	queue := []digest.Digest{root}
	for len(queue) > 0 {
		if len(seen) > maxTreeDirectories {
			return nil, fmt.Errorf("output directory %s: more than %d directories", p, maxTreeDirectories)
		}
		dir := &repb.Directory{}
		if err := w.c.ReadProto(ctx, queue[0], dir); err != nil {
			return nil, fmt.Errorf("output directory %s: %w", p, err)
		}
		if tree.Root == nil {
			tree.Root = dir
		} else {
			tree.Children = append(tree.Children, dir)
		}
		queue = queue[1:]
		for _, sub := range dir.Directories {
			sd, err := digest.FromProto(repb.DigestFunction_SHA256, sub.Digest, "output directory "+p+" "+sub.Name)
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

// maxTreeDirectories bounds the Directory blobs treeOf reads.
const maxTreeDirectories = 1 << 20

// maxTreeDepth bounds the recursion over a server's Tree.
const maxTreeDepth = 256

func (w outputWriter) tree(ctx context.Context, p string, dir *repb.Directory, children map[digest.Digest]*repb.Directory, depth int) error {
	if depth > maxTreeDepth {
		return fmt.Errorf("output directory %s: nested deeper than %d", p, maxTreeDepth)
	}
	if err := w.root.MkdirAll(p, 0o755); err != nil {
		return fmt.Errorf("output %s: %w", p, err)
	}
	join := func(name string) (string, error) {
		if name == "" || name == "." || name == ".." || strings.Contains(name, "/") {
			return "", fmt.Errorf("output directory %s: bad entry name %q", p, name)
		}
		return p + "/" + name, nil
	}
	for _, f := range dir.Files {
		fp, err := join(f.Name)
		if err != nil {
			return err
		}
		if err := w.file(ctx, fp, f.Digest, nil, f.IsExecutable); err != nil {
			return err
		}
	}
	for _, l := range dir.Symlinks {
		lp, err := join(l.Name)
		if err != nil {
			return err
		}
		if err := w.symlink(lp, l.Target); err != nil {
			return err
		}
	}
	for _, sub := range dir.Directories {
		sp, err := join(sub.Name)
		if err != nil {
			return err
		}
		sd, err := digest.FromProto(repb.DigestFunction_SHA256, sub.Digest, "output directory "+sp)
		if err != nil {
			return err
		}
		child := children[sd]
		if child == nil {
			return fmt.Errorf("output directory %s: the tree lacks %s", sp, sd)
		}
		if err := w.tree(ctx, sp, child, children, depth+1); err != nil {
			return err
		}
	}
	return nil
}
