package rev2

import (
	"cmp"
	"fmt"
	"path"
	"slices"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
)

// Bounds on a Command's output paths and working directory. Before an
// action runs, the worker creates the working directory and every parent of
// every output, paid for by nothing the client is charged (not the input
// root's max_input_files, not the runner's disk quota): each "a/" in an
// output path is two bytes of Command and one directory on the worker's
// disk, so a 16 MiB Command could ask for millions. The scheduler refuses a
// Command past these bounds at Execute, and the worker again before it
// creates anything. Bazel declares one output path per output file or
// directory, with paths of tens of levels and a few hundred bytes, so
// honest builds never come near them.
const (
	// MaxOutputPathBytes bounds an output path, or the working directory,
	// relative to the input root (the working directory joined). It is
	// PATH_MAX less MaxInputRootPathBytes and the "/" and NUL around the
	// output: the output's absolute path fits the kernel's limit wherever
	// the input root is, in the sandbox at any InputRootAbsolutePath, and
	// on the host in a build directory of up to about 1 KiB (the runner
	// reaches the input root's directories there by name).
	MaxOutputPathBytes = pathMax - MaxInputRootPathBytes - 2
	// MaxOutputPathLevels bounds how many names an output path, or the
	// working directory, has below the input root: as many as an input
	// root may be deep (max_input_depth's default) and an output directory
	// collected (max_output_depth's default). The runner's disk guard
	// walks trees up to twice that (maxWalkDepth, 512) and kills a sandbox
	// whose tree is deeper, so directories the worker made for a client
	// must stay well within it; the worker also holds one descriptor a
	// level while it makes them.
	MaxOutputPathLevels = 256
	// MaxOutputDirs bounds how many distinct directories the working
	// directory and the outputs' parents are, each counted once however
	// many outputs share it. 100,000 empty directories take about 400 MB
	// on ext4 and 15 s to make (measured on a VM): what an input root of a
	// twentieth of max_input_files' default costs.
	MaxOutputDirs = 100_000
)

// pathMax is Linux's PATH_MAX: the longest path a system call takes, its
// NUL included.
const pathMax = 4096

// checkOutputPath checks the bounds above for p, an output path (or the
// working directory) as the field gives it, which rel is, relative to the
// input root. p must already be clean and inside the input root.
func checkOutputPath(field, p, rel string) error {
	for c := range strings.SplitSeq(p, "/") {
		if len(c) > maxNameBytes {
			return Invalid(field, "%s has a name of %d bytes; Linux takes at most %d (NAME_MAX)", Quote(p), len(c), maxNameBytes)
		}
	}
	if len(rel) > MaxOutputPathBytes {
		return Invalid(field, "%s is %d bytes long from the input root, past the limit of %d (the kernel's PATH_MAX of %d, less room for the directory the input root is in)", Quote(p), len(rel), MaxOutputPathBytes, pathMax)
	}
	if n := strings.Count(rel, "/") + 1; n > MaxOutputPathLevels {
		return Invalid(field, "%s has %d levels from the input root, past the limit of %d", Quote(p), n, MaxOutputPathLevels)
	}
	return nil
}

// OutputDirs returns the directories the worker creates before the command
// runs, relative to the input root: the working directory and every parent
// of every output, each once, and in the order a depth-first walk meets
// them (a directory before its descendants, each subtree together), so
// that they can be made with one mkdirat each from their parent's
// descriptor. Past MaxOutputDirs it refuses the Command with
// INVALID_ARGUMENT naming the field that went past it (CheckCommand checks
// the same bound). The Command must have passed CheckCommand's other
// checks: its paths are clean, inside the input root and within
// MaxOutputPathLevels.
func OutputDirs(c *repb.Command) ([]string, error) {
	seen, err := outputDirSet(c)
	if err != nil {
		return nil, err
	}
	dirs := make([]string, 0, len(seen))
	for d := range seen {
		dirs = append(dirs, d)
	}
	slices.SortFunc(dirs, compareWalkOrder)
	return dirs, nil
}

// outputDirSet is OutputDirs without the order, which CheckCommand does
// not need.
func outputDirSet(c *repb.Command) (map[string]bool, error) {
	seen := map[string]bool{}
	// add adds dir and its ancestors, deepest first: once one is there,
	// so are the ones above it, which keeps the work to the path's length
	// however many outputs share a parent. It reports false past the bound.
	add := func(dir string) bool {
		for dir != "" && !seen[dir] {
			if len(seen) == MaxOutputDirs {
				return false
			}
			seen[dir] = true
			dir = dir[:max(strings.LastIndexByte(dir, '/'), 0)]
		}
		return true
	}
	tooMany := func(field string) error {
		return Invalid(field, "the working directory and the parents of the outputs up to this one are more than %d directories, past the limit of what the worker creates before the command runs", MaxOutputDirs)
	}
	if !add(c.WorkingDirectory) {
		return nil, tooMany("command.working_directory")
	}
	type list struct {
		field string
		paths []string
	}
	lists := []list{{"command.output_paths", c.OutputPaths}}
	if len(c.OutputPaths) == 0 { // REv2 2.0
		lists = []list{{"command.output_files", c.OutputFiles}, {"command.output_directories", c.OutputDirectories}}
	}
	for _, l := range lists {
		for i, p := range l.paths {
			rel := path.Join(c.WorkingDirectory, p)
			if !add(rel[:max(strings.LastIndexByte(rel, '/'), 0)]) {
				return nil, tooMany(fmt.Sprintf("%s[%d]", l.field, i))
			}
		}
	}
	return seen, nil
}

// compareWalkOrder orders paths as a depth-first walk meets them: byte by
// byte with '/' below every other byte (NUL is never in a path), so that
// "a", "a/b" and "a/c" come before "a-b".
func compareWalkOrder(a, b string) int {
	n := min(len(a), len(b))
	i := 0
	// Skip the common prefix a chunk at a time: sibling directories share
	// all but their last name, and paths run to MaxOutputPathBytes.
	for i+64 <= n && a[i:i+64] == b[i:i+64] {
		i += 64
	}
	for ; i < n; i++ {
		if x, y := a[i], b[i]; x != y {
			if x == '/' {
				x = 0
			}
			if y == '/' {
				y = 0
			}
			return cmp.Compare(x, y)
		}
	}
	return cmp.Compare(len(a), len(b))
}
