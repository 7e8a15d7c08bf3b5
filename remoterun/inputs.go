package remoterun

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/paddock-build/paddock/client"
)

// Inputs gathers local files into an input root: the directory Root on
// this machine becomes the root of the remote input tree, and each path
// added keeps its place relative to it. Files are hashed here and read
// again only if the server lacks them.
type Inputs struct {
	root, cwd string // absolute, symlinks resolved
	// fsys is root, opened: files are hashed and uploaded from inside it
	// only (client.FileBlobIn), whatever a path has become since Check.
	// The blobs hold it until their upload; it is closed when the last
	// of them is gone (os.Root's finalizer), at the latest when the
	// process ends.
	fsys *os.Root
	tree *client.Tree
	// Outside lists the compiler-reported dependencies outside the root
	// (system headers): they are not uploaded, the remote side (the
	// worker's host or the container image) provides them.
	Outside []string
}

// NewInputs starts an input root at root for a command run in cwd, which
// must be root or below it.
func NewInputs(root, cwd string) (*Inputs, error) {
	var err error
	if root, err = resolve(root); err != nil {
		return nil, fmt.Errorf("input root: %w", err)
	}
	if cwd, err = resolve(cwd); err != nil {
		return nil, fmt.Errorf("working directory: %w", err)
	}
	in := &Inputs{root: root, cwd: cwd, tree: client.NewTree()}
	if _, inside := in.rel(cwd); !inside {
		return nil, fmt.Errorf("the working directory %s is outside the input root %s", cwd, root)
	}
	if in.fsys, err = os.OpenRoot(root); err != nil {
		return nil, fmt.Errorf("input root: %w", err)
	}
	return in, nil
}

func resolve(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(abs)
}

// WorkingDirectory is the command's directory relative to the root
// ("" for the root itself), as Command.working_directory wants it.
func (in *Inputs) WorkingDirectory() string {
	rel, _ := in.rel(in.cwd)
	if rel == "." {
		return ""
	}
	return rel
}

// rel returns abs relative to the root, slash-separated, and whether it
// is inside the root.
func (in *Inputs) rel(abs string) (string, bool) {
	rel, err := filepath.Rel(in.root, abs)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", false
	}
	return filepath.ToSlash(rel), true
}

// abs returns p (relative to the working directory, or absolute) as an
// absolute path whose parent directories have their symlinks resolved.
func (in *Inputs) abs(p string) (string, error) {
	if !filepath.IsAbs(p) {
		p = filepath.Join(in.cwd, p)
	}
	dir, err := filepath.EvalSymlinks(filepath.Dir(p))
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, filepath.Base(p)), nil
}

// Check reports whether p exists and lies inside the root, without
// reading it: it runs for every listed path before anything is uploaded.
// A symlink given by name is checked where it leads: its target, every
// link resolved, must be inside the root too. Add uploads what the link
// points at (as recc does, and as a user naming a file expects), so a
// link to /etc/passwd, planted by anyone who can write the tree, must not
// make a run upload /etc/passwd.
func (in *Inputs) Check(p string) error {
	_, err := in.target(p)
	return err
}

// target returns p's absolute path (parent directories resolved) once
// Check's rules hold for it.
func (in *Inputs) target(p string) (string, error) {
	abs, err := in.abs(p)
	var resolved string
	if err == nil {
		resolved, err = filepath.EvalSymlinks(abs)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("input %s: no such file or directory", p)
	}
	if err != nil {
		return "", fmt.Errorf("input %s: %w", p, err)
	}
	if _, inside := in.rel(abs); !inside {
		return "", fmt.Errorf("input %s is outside the input root %s (set --root)", p, in.root)
	}
	if _, inside := in.rel(resolved); !inside {
		return "", fmt.Errorf("input %s is a symlink to %s, outside the input root %s; name the target itself (and set --root) to upload it", p, resolved, in.root)
	}
	return abs, nil
}

// Add adds the file or directory tree at p (relative to the working
// directory, or absolute); a symlink given by name is followed if it
// leads to somewhere inside the root (see Check).
func (in *Inputs) Add(p string) error {
	abs, err := in.target(p)
	if err != nil {
		return err
	}
	info, err := os.Stat(abs)
	if err != nil {
		return fmt.Errorf("input %s: %w", p, err)
	}
	rel, _ := in.rel(abs)
	if !info.IsDir() {
		if !info.Mode().IsRegular() {
			// A FIFO's open blocks until a writer comes, Ctrl-C or not.
			return fmt.Errorf("input %s is neither a file, a directory nor a symlink (%s)", p, info.Mode().Type())
		}
		return in.addFile(abs, rel, info)
	}
	return filepath.WalkDir(abs, func(walked string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("input %s: %w", p, err)
		}
		r, _ := in.rel(walked)
		switch {
		case r == ".":
			return nil
		case d.IsDir():
			return in.tree.AddDir(r)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(walked)
			if err != nil {
				return fmt.Errorf("input %s: %w", walked, err)
			}
			return in.tree.AddSymlink(r, target)
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return fmt.Errorf("input %s: %w", walked, err)
			}
			return in.addFile(walked, r, info)
		default:
			return fmt.Errorf("input %s: neither a file, a directory nor a symlink", walked)
		}
	})
}

// AddDependency adds a file the compiler reported reading: one inside the
// root is uploaded, one outside it is left to the remote side.
func (in *Inputs) AddDependency(p string) error {
	abs, err := in.abs(p)
	if err != nil {
		return fmt.Errorf("dependency %s: %w", p, err)
	}
	if _, inside := in.rel(abs); !inside {
		in.Outside = append(in.Outside, p)
		return nil
	}
	return in.Add(p)
}

func (in *Inputs) addFile(abs, rel string, info fs.FileInfo) error {
	if rel == "." {
		return fmt.Errorf("input %s: the input root itself is not a file", abs)
	}
	b, err := client.FileBlobIn(in.fsys, rel)
	if err != nil {
		return fmt.Errorf("input %s: %w", abs, err)
	}
	return in.tree.AddFile(rel, b, info.Mode()&0o111 != 0)
}

// Tree is the input tree built so far.
func (in *Inputs) Tree() *client.Tree { return in.tree }
