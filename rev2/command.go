package rev2

import (
	"fmt"
	"path"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
)

// MaxArgBytes bounds a command's arguments and environment together,
// counted as execve(2) counts them (each string with its NUL, plus a
// pointer). It is Linux's ARG_MAX under the default 8 MiB stack limit:
// anything larger could never be started, and would not fit the worker's
// message to its runner either, so Execute refuses it at once.
const MaxArgBytes = 2 << 20

// execReserve is what execve counts beyond the Command's own strings:
// the program's path, copied first once resolved (up to PATH_MAX), and a
// little of the runner's default_environment. Without it a Command just
// under MaxArgBytes passed Execute and failed to start.
const execReserve = 4096 + 1024

// maxArgString is the kernel's MAX_ARG_STRLEN: no single argument or
// environment string may be longer (NUL included).
const maxArgString = 32 * 4096

// CheckCommand validates a Command: its arguments and environment (which
// must be startable by execve), its working directory, and its output
// paths, which must be clean relative paths that stay inside the input
// root, sorted and without duplicates as the spec requires, and within
// the bounds on what the worker creates for them (MaxOutputPathBytes,
// MaxOutputPathLevels, MaxOutputDirs, and NAME_MAX for each name). With
// output_paths set (REv2 2.1), output_files and output_directories are
// ignored, as the spec says.
func CheckCommand(c *repb.Command) error {
	if err := checkArgv(c); err != nil {
		return err
	}
	// Paddock reports no node properties on outputs (its Capabilities
	// list none), and REv2 says a property the server does not recognize
	// is INVALID_ARGUMENT.
	if len(c.OutputNodeProperties) > 0 {
		return Invalid("command.output_node_properties[0]", "node property %q is not supported: this server reports none", c.OutputNodeProperties[0])
	}
	wd := c.WorkingDirectory
	if wd != "" {
		if err := CheckRelativePath("command.working_directory", wd, ""); err != nil {
			return err
		}
		if err := checkOutputPath("command.working_directory", wd, wd); err != nil {
			return err
		}
	}
	if len(c.OutputPaths) > 0 {
		// "" is the working directory itself, as output_directories
		// allows: output_paths supersedes that field, and a client moving
		// to it keeps its outputs.
		if err := checkSorted("command.output_paths", c.OutputPaths, wd, true); err != nil {
			return err
		}
	} else {
		if err := checkSorted("command.output_files", c.OutputFiles, wd, false); err != nil {
			return err
		}
		if err := checkSorted("command.output_directories", c.OutputDirectories, wd, true); err != nil {
			return err
		}
		if err := checkOutputFileConflicts(c.OutputFiles, c.OutputDirectories); err != nil {
			return err
		}
	}
	_, err := outputDirSet(c)
	return err
}

// OutputPaths returns the command's outputs as paths relative to the input
// root (working directory joined), in the form the worker creates parents
// for and collects: output_paths, or output_files then output_directories.
// The command must have passed CheckCommand.
func OutputPaths(c *repb.Command) []string {
	var out []string
	lists := [][]string{c.OutputPaths}
	if len(c.OutputPaths) == 0 {
		lists = [][]string{c.OutputFiles, c.OutputDirectories}
	}
	for _, l := range lists {
		for _, p := range l {
			out = append(out, path.Join(c.WorkingDirectory, p))
		}
	}
	return out
}

func checkArgv(c *repb.Command) error {
	if len(c.Arguments) == 0 {
		return Invalid("command.arguments", "empty; the first argument is the program to run")
	}
	if c.Arguments[0] == "" {
		return Invalid("command.arguments[0]", "the program to run is empty")
	}
	total := execReserve
	for i, a := range c.Arguments {
		if err := checkArgString(fmt.Sprintf("command.arguments[%d]", i), a); err != nil {
			return err
		}
		total += len(a) + 1 + 8
	}
	// The spec asks for variables sorted by name; they are not checked for
	// order, because clients in the wild do not all sort them and the
	// order changes nothing but the Command's digest. A name given twice
	// is refused: which value the command would see is not defined.
	seen := make(map[string]bool, len(c.EnvironmentVariables))
	for i, v := range c.EnvironmentVariables {
		f := fmt.Sprintf("command.environment_variables[%d]", i)
		switch {
		case v.Name == "":
			return Invalid(f, "name is empty")
		case strings.ContainsAny(v.Name, "=\x00"):
			return Invalid(f, "name %s contains '=' or NUL", Quote(v.Name))
		case seen[v.Name]:
			return Invalid(f, "name %s given twice", Quote(v.Name))
		}
		seen[v.Name] = true
		if err := checkArgString(f, v.Name+"="+v.Value); err != nil {
			return err
		}
		total += len(v.Name) + 1 + len(v.Value) + 1 + 8
	}
	if total > MaxArgBytes {
		return Invalid("command.arguments", "%d bytes of arguments and environment, above the limit of %d (Linux's ARG_MAX); pass long argument lists in a parameter file", total, MaxArgBytes)
	}
	return nil
}

func checkArgString(field, s string) error {
	if strings.IndexByte(s, 0) >= 0 {
		return Invalid(field, "contains a NUL byte")
	}
	if len(s)+1 > maxArgString {
		return Invalid(field, "%d bytes long, above the kernel's limit of %d for one argument or environment string", len(s), maxArgString-1)
	}
	return nil
}

// CheckRelativePath checks that p is a clean relative path (no leading or
// trailing slash, no empty, "." or redundant components) that, taken
// relative to directory base (itself relative to the input root), stays
// inside the input root.
func CheckRelativePath(field, p, base string) error {
	if err := CheckCleanPath(field, p); err != nil {
		return err
	}
	depth := 0
	for _, part := range strings.Split(base+"/"+p, "/") {
		switch part {
		case "", ".":
		case "..":
			if depth--; depth < 0 {
				return Invalid(field, "%s escapes the input root", Quote(p))
			}
		default:
			depth++
		}
	}
	return nil
}

// CheckCleanPath checks that p is a clean relative path: not empty, no
// leading or trailing slash, no NUL byte, no "." or empty components. It
// says nothing about ".." (see CheckRelativePath), for callers that do not
// know the directory p is relative to.
func CheckCleanPath(field, p string) error {
	switch {
	case p == "":
		return Invalid(field, "path is empty")
	case strings.HasPrefix(p, "/"):
		return Invalid(field, "%s is absolute; it must be relative (working_directory to the input root, outputs to the working directory)", Quote(p))
	case strings.IndexByte(p, 0) >= 0:
		return Invalid(field, "%s contains a NUL byte", Quote(p))
	case path.Clean(p) != p || p == ".":
		return Invalid(field, "%s is not a clean path (no trailing slash, '.', or empty components)", Quote(p))
	}
	return nil
}

// checkSorted checks each path of list and that the list is sorted by
// bytes without duplicates. emptyOK allows "" (an output directory of the
// whole working directory, which the spec allows), and "." for it, as
// BuildStream 2 names it (os.path.relpath of the working directory): each
// of its builds was refused INVALID_ARGUMENT (outside probe); both
// together name one output twice.
func checkSorted(field string, list []string, wd string, emptyOK bool) error {
	whole := 0
	for i, p := range list {
		f := fmt.Sprintf("%s[%d]", field, i)
		if emptyOK && IsWholeDirectory(p) {
			if whole++; whole > 1 {
				return Invalid(f, "%s names the working directory, as %s does", Quote(p), Quote(list[i-1]))
			}
		} else {
			if err := CheckRelativePath(f, p, wd); err != nil {
				return err
			}
			if err := checkOutputPath(f, p, path.Join(wd, p)); err != nil {
				return err
			}
		}
		if i > 0 {
			switch prev := list[i-1]; {
			case prev == p:
				return Invalid(f, "%s is listed twice", Quote(p))
			case prev > p:
				return Invalid(f, "%s comes after %s; output paths must be sorted", Quote(p), Quote(prev))
			}
		}
	}
	return nil
}

// IsWholeDirectory reports whether an output directory path names the
// whole working directory: "" (the spec's) or ".".
func IsWholeDirectory(p string) bool { return p == "" || p == "." }

// checkOutputFileConflicts enforces the spec's rules for REv2 2.0 outputs:
// an output file is neither an output directory nor the parent of another
// output file. Both lists are sorted.
func checkOutputFileConflicts(files, dirs []string) error {
	dirSet := make(map[string]bool, len(dirs))
	for _, d := range dirs {
		dirSet[d] = true
	}
	for i, f := range files {
		field := fmt.Sprintf("command.output_files[%d]", i)
		if dirSet[f] {
			return Invalid(field, "%s is also an output directory", Quote(f))
		}
		// Sorted: a file's descendants sort right after it ("a" < "a/b"),
		// although other names ("a-b", "a.b") may come in between.
		for _, g := range files[i+1:] {
			if strings.HasPrefix(g, f+"/") {
				return Invalid(field, "output file %s is the parent of output file %s", Quote(f), Quote(g))
			}
			if !strings.HasPrefix(g, f) {
				break
			}
		}
	}
	return nil
}
