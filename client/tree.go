package client

import (
	"fmt"
	"path"
	"sort"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/digest"
)

// Tree builds an input root: files, symlinks and empty directories at
// slash-separated paths relative to the root. Build turns it into REv2
// Directory messages, every list sorted by name as the spec requires so
// that equal trees have equal digests. Pure: it reads no files itself.
type Tree struct {
	root *treeDir
}

type treeDir struct {
	files    map[string]*repb.FileNode
	symlinks map[string]*repb.SymlinkNode
	dirs     map[string]*treeDir
	blobs    map[string]Blob // file name → its content
}

func newTreeDir() *treeDir {
	return &treeDir{files: map[string]*repb.FileNode{}, symlinks: map[string]*repb.SymlinkNode{}, dirs: map[string]*treeDir{}, blobs: map[string]Blob{}}
}

// NewTree returns an empty tree.
func NewTree() *Tree { return &Tree{root: newTreeDir()} }

// CleanPath checks that p is a relative, slash-separated path that stays
// inside the root and returns its components.
func CleanPath(p string) ([]string, error) {
	if p == "" || strings.HasPrefix(p, "/") {
		return nil, fmt.Errorf("%q is not a relative path", p)
	}
	var parts []string
	for _, part := range strings.Split(path.Clean(p), "/") {
		switch part {
		case ".":
		case "..":
			return nil, fmt.Errorf("%q goes up with \"..\"", p)
		default:
			parts = append(parts, part)
		}
	}
	if len(parts) == 0 {
		return nil, fmt.Errorf("%q names the input root itself", p)
	}
	return parts, nil
}

// dir returns the directory at parts, creating it; it fails if a file or
// symlink of that name is in the way.
func (t *Tree) dir(parts []string, full string) (*treeDir, error) {
	d := t.root
	for _, name := range parts {
		if d.files[name] != nil || d.symlinks[name] != nil {
			return nil, fmt.Errorf("%s: %s is not a directory", full, name)
		}
		next := d.dirs[name]
		if next == nil {
			next = newTreeDir()
			d.dirs[name] = next
		}
		d = next
	}
	return d, nil
}

// parent is the directory that holds p's last element, made as needed,
// and that element's name: where AddFile and AddSymlink put their node.
func (t *Tree) parent(p string) (*treeDir, string, error) {
	parts, err := CleanPath(p)
	if err != nil {
		return nil, "", err
	}
	d, err := t.dir(parts[:len(parts)-1], p)
	if err != nil {
		return nil, "", err
	}
	return d, parts[len(parts)-1], nil
}

// AddFile adds a file at p. Adding the same content again is a no-op.
func (t *Tree) AddFile(p string, b Blob, executable bool) error {
	d, name, err := t.parent(p)
	if err != nil {
		return err
	}
	if old := d.files[name]; old != nil {
		if old.Digest.GetHash() != b.Digest.Hash() || old.IsExecutable != executable {
			return fmt.Errorf("%s added twice with different content", p)
		}
		return nil
	}
	if d.dirs[name] != nil || d.symlinks[name] != nil {
		return fmt.Errorf("%s added twice, as a file and as something else", p)
	}
	d.files[name] = &repb.FileNode{Name: name, Digest: b.Digest.Proto(), IsExecutable: executable}
	d.blobs[name] = b
	return nil
}

// AddSymlink adds a symlink at p pointing at target.
func (t *Tree) AddSymlink(p, target string) error {
	d, name, err := t.parent(p)
	if err != nil {
		return err
	}
	if d.files[name] != nil || d.dirs[name] != nil {
		return fmt.Errorf("%s added twice, as a symlink and as something else", p)
	}
	d.symlinks[name] = &repb.SymlinkNode{Name: name, Target: target}
	return nil
}

// AddDir adds a (possibly empty) directory at p.
func (t *Tree) AddDir(p string) error {
	parts, err := CleanPath(p)
	if err != nil {
		return err
	}
	_, err = t.dir(parts, p)
	return err
}

// Build returns the root Directory's digest and every blob of the tree:
// file contents and Directory messages.
func (t *Tree) Build() (digest.Digest, []Blob) {
	var blobs []Blob
	root := build(t.root, &blobs)
	return root, blobs
}

func build(d *treeDir, blobs *[]Blob) digest.Digest {
	msg := &repb.Directory{}
	for _, name := range sortedKeys(d.files) {
		msg.Files = append(msg.Files, d.files[name])
		*blobs = append(*blobs, d.blobs[name])
	}
	for _, name := range sortedKeys(d.dirs) {
		msg.Directories = append(msg.Directories, &repb.DirectoryNode{Name: name, Digest: build(d.dirs[name], blobs).Proto()})
	}
	for _, name := range sortedKeys(d.symlinks) {
		msg.Symlinks = append(msg.Symlinks, d.symlinks[name])
	}
	b := ProtoBlob(msg)
	*blobs = append(*blobs, b)
	return b.Digest
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
