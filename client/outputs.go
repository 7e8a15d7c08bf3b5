package client

import (
	"context"
	"fmt"
	"os"
	"path"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
)

// MaxOutputEntries bounds the files, symlinks and directories one result
// may write, counted as they would be written: a Tree whose directories
// share subtrees by digest is counted once per place it appears, so a
// 6 KB Tree cannot expand into 2^40 files. It is the worker's default
// max_output_files.
const MaxOutputEntries = 1_000_000

// WriteOutputs writes an ActionResult's output files, directories and
// symlinks under dir, the local counterpart of the working directory of
// cmd, the Command the result answers. The result comes from the server
// and is treated as hostile, so it is checked whole before anything is
// written:
//   - only paths cmd declared are written (a server must not plant
//     .bashrc or .git/hooks/pre-commit);
//   - every path is relative and stays inside dir (os.Root enforces it at
//     write time too, so a symlink cannot lead a write out either);
//   - every output directory's Tree is fetched and every Directory in it
//     validated (names, no name twice), and all of them together expand to
//     at most MaxOutputEntries entries;
//   - symlink targets are relative and, resolved from the link's
//     directory, stay inside dir, so a later upload of a "file" there
//     cannot read /etc/passwd;
//   - inline contents hash to their digest.
//
// Then files are streamed to a temporary file beside their destination,
// verified, and renamed into place; an output directory is built beside
// its destination and swapped in, so a failed write leaves the old one.
// ctx is checked between entries: cancelling stops a long write.
func (c *Client) WriteOutputs(ctx context.Context, dir string, cmd *repb.Command, r *repb.ActionResult) error {
	p, err := c.planOutputs(ctx, cmd, r)
	if err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	return outputWriter{c: c, root: root}.write(ctx, p)
}

// outputPlan is a result's outputs, every one checked: what write does.
type outputPlan struct {
	files []plannedFile
	dirs  []plannedDir
	links []plannedLink
}

// plannedFile is a file to write: its digest is valid, and inline, when
// not nil, hashes to it.
type plannedFile struct {
	path       string
	digest     digest.Digest
	inline     []byte
	executable bool
}

type plannedLink struct{ path, target string }

// planOutputs checks the whole result against cmd and fetches and checks
// every output directory's Tree; it writes nothing.
func (c *Client) planOutputs(ctx context.Context, cmd *repb.Command, r *repb.ActionResult) (*outputPlan, error) {
	decl := declaredOutputs(cmd)
	p := &outputPlan{}
	for _, f := range r.OutputFiles {
		pf, err := planFile(decl.files, f)
		if err != nil {
			return nil, err
		}
		p.files = append(p.files, pf)
	}
	links := []struct {
		list     []*repb.OutputSymlink
		declared map[string]bool
	}{{r.OutputSymlinks, decl.any}, {r.OutputFileSymlinks, decl.files}, {r.OutputDirectorySymlinks, decl.dirs}}
	for _, l := range links {
		for _, s := range l.list {
			pl, err := planLink(l.declared, s)
			if err != nil {
				return nil, err
			}
			p.links = append(p.links, pl)
		}
	}
	entries := len(p.files) + len(p.links)
	for _, d := range r.OutputDirectories {
		pd, err := c.planDir(ctx, decl.dirs, d, MaxOutputEntries-entries)
		if err != nil {
			return nil, err
		}
		entries += pd.entries
		p.dirs = append(p.dirs, pd)
	}
	return p, nil
}

// declared is what a Command asked for, as cleaned paths relative to the
// working directory: output_paths (2.1) may be of any kind; 2.0's
// output_files are files or file symlinks, output_directories directories
// or directory symlinks.
type declared struct{ files, dirs, any map[string]bool }

func declaredOutputs(cmd *repb.Command) declared {
	set := func(lists ...[]string) map[string]bool {
		m := map[string]bool{}
		for _, l := range lists {
			for _, p := range l {
				if parts, err := CleanPath(p); err == nil {
					m[strings.Join(parts, "/")] = true
				}
			}
		}
		return m
	}
	if len(cmd.GetOutputPaths()) > 0 {
		all := set(cmd.OutputPaths)
		return declared{files: all, dirs: all, any: all}
	}
	return declared{files: set(cmd.GetOutputFiles()), dirs: set(cmd.GetOutputDirectories()),
		any: set(cmd.GetOutputFiles(), cmd.GetOutputDirectories())}
}

// cleanDeclared checks a path from the server and returns it slash-joined;
// it must be one the Command declared.
func cleanDeclared(field, p string, declared map[string]bool) (string, error) {
	parts, err := CleanPath(p)
	if err != nil {
		return "", status.Errorf(codes.InvalidArgument, "result %s: %v", field, err)
	}
	clean := strings.Join(parts, "/")
	if !declared[clean] {
		return "", status.Errorf(codes.InvalidArgument, "result %s %q: the command did not declare this output; nothing was written", field, p)
	}
	return clean, nil
}

func planFile(declared map[string]bool, f *repb.OutputFile) (plannedFile, error) {
	p, err := cleanDeclared("output file", f.Path, declared)
	if err != nil {
		return plannedFile{}, err
	}
	d, err := digest.FromProto(repb.DigestFunction_SHA256, f.Digest, fmt.Sprintf("output file %q", p))
	if err != nil {
		return plannedFile{}, err
	}
	pf := plannedFile{path: p, digest: d, executable: f.IsExecutable}
	if len(f.Contents) > 0 {
		if err := CheckInline(fmt.Sprintf("output file %q", p), d, f.Contents); err != nil {
			return plannedFile{}, err
		}
		pf.inline = f.Contents
	}
	return pf, nil
}

func planLink(declared map[string]bool, s *repb.OutputSymlink) (plannedLink, error) {
	p, err := cleanDeclared("output symlink", s.Path, declared)
	if err != nil {
		return plannedLink{}, err
	}
	if err := CheckLinkTarget(p, s.Target); err != nil {
		return plannedLink{}, err
	}
	return plannedLink{path: p, target: s.Target}, nil
}

// CheckLinkTarget refuses a symlink at p (relative to the working
// directory) whose target is absolute or, resolved lexically from p's
// directory, leaves the working directory. Such a link written by a
// result would let a later run upload whatever it points at (`input.c ->
// /etc/passwd`) or a later write follow it out.
//
// A target climbs (..) before it names anything: a ".." after a name
// climbs from wherever that name leads, which may be another link of the
// same result rather than the directory the name suggests. With `x -> .`
// beside it, `l -> x/x/x/../../../../etc/passwd` stays inside on paper and
// reached /etc/passwd on disk. Climbing first, every step is where the
// lexical check puts it: the climb from the link's own directory, then
// names, each a directory or a link held to the same rules.
func CheckLinkTarget(p, target string) error {
	switch {
	case target == "" || strings.IndexByte(target, 0) >= 0:
		return status.Errorf(codes.InvalidArgument, "symlink %q: bad target %q", p, target)
	case path.IsAbs(target):
		return status.Errorf(codes.InvalidArgument, "symlink %q: the target %q is absolute; only targets inside the working directory are written", p, target)
	}
	named := false
	for _, c := range strings.Split(target, "/") {
		switch c {
		case "", ".":
		case "..":
			if named {
				return status.Errorf(codes.InvalidArgument, "symlink %q: the target %q climbs (..) after a name, which another link may redirect; only targets that climb first are written", p, target)
			}
		default:
			named = true
		}
	}
	if resolved := path.Join(path.Dir(p), target); resolved == ".." || strings.HasPrefix(resolved, "../") {
		return status.Errorf(codes.InvalidArgument, "symlink %q: the target %q leaves the working directory", p, target)
	}
	return nil
}
