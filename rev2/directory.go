package rev2

import (
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
)

// SymlinkPolicy says which input symlink targets a server accepts; it
// must match what Capabilities advertises.
type SymlinkPolicy int

const (
	// RelativeSymlinksOnly refuses absolute targets (SymlinkAbsolutePathStrategy
	// DISALLOWED, what Paddock advertises).
	RelativeSymlinksOnly SymlinkPolicy = iota
	// AnySymlinks accepts absolute targets too (ALLOWED).
	AnySymlinks
)

// CheckDirectory validates one Directory of an input tree, found at where
// (a path inside the tree, "" for the root, used only in messages): every
// name is a single path component; files, directories and symlinks are each
// sorted by name, as the spec requires so that equal trees have equal
// digests; no name appears twice, in one list or across them; symlink
// targets are non-empty and, under RelativeSymlinksOnly, relative.
// Digests are the caller's to check, under its digest function.
func CheckDirectory(d *repb.Directory, where string, symlinks SymlinkPolicy) error {
	files := make([]string, len(d.Files))
	for i, f := range d.Files {
		files[i] = f.Name
	}
	dirs := make([]string, len(d.Directories))
	for i, sub := range d.Directories {
		dirs[i] = sub.Name
	}
	links := make([]string, len(d.Symlinks))
	for i, s := range d.Symlinks {
		links[i] = s.Name
	}
	for _, l := range []struct {
		kind  string
		names []string
	}{{"file", files}, {"directory", dirs}, {"symlink", links}} {
		if err := checkSortedNames(where, l.kind, l.names); err != nil {
			return err
		}
	}
	for _, pair := range [][2][]string{{files, dirs}, {files, links}, {dirs, links}} {
		if name, ok := common(pair[0], pair[1]); ok {
			return Invalid("input root: "+Quote(Join(where, name)), "the name is used twice (as two kinds of entry)")
		}
	}
	for _, s := range d.Symlinks {
		field := "input root: symlink " + Quote(Join(where, s.Name))
		switch {
		case s.Target == "":
			return Invalid(field, "the target is empty")
		case strings.IndexByte(s.Target, 0) >= 0:
			return Invalid(field, "the target contains a NUL byte")
		case strings.HasPrefix(s.Target, "/") && symlinks == RelativeSymlinksOnly:
			return Invalid(field, "the target %s is absolute, and this server does not allow absolute symlinks (Capabilities: DISALLOWED)", Quote(s.Target))
		}
	}
	return nil
}

// checkSortedNames checks one list of a Directory: valid names, sorted,
// none twice.
func checkSortedNames(where, kind string, names []string) error {
	for i, name := range names {
		field := "input root: " + kind + " " + Quote(Join(where, name))
		if why := CheckName(name); why != "" {
			return Invalid(field, "%s", why)
		}
		if i == 0 {
			continue
		}
		switch prev := names[i-1]; {
		case prev == name:
			return Invalid(field, "the name is used twice")
		case prev > name:
			return Invalid(field, "comes after %s; a Directory's entries must be sorted by name", Quote(prev))
		}
	}
	return nil
}

// common returns a name found in both sorted lists, merging them without
// allocating.
func common(a, b []string) (string, bool) {
	for i, j := 0, 0; i < len(a) && j < len(b); {
		switch {
		case a[i] == b[j]:
			return a[i], true
		case a[i] < b[j]:
			i++
		default:
			j++
		}
	}
	return "", false
}

// Join joins a path inside a tree and a name ("" is the root).
func Join(where, name string) string {
	if where == "" {
		return name
	}
	return where + "/" + name
}

// CheckName refuses names that are not a single path component.
func CheckName(name string) string {
	switch {
	case name == "":
		return "the name is empty"
	case name == "." || name == "..":
		return "the name is not allowed"
	case strings.ContainsRune(name, '/'):
		return "the name contains '/'"
	case strings.IndexByte(name, 0) >= 0:
		return "the name contains a NUL byte"
	}
	return ""
}

// CheckNameLengths refuses a Directory, found at where, with a name
// longer than Linux takes (NAME_MAX): as an input root it could not be
// laid out, and would fail the same way on every try. Kept apart from
// CheckDirectory, which also checks trees made on other systems (results
// a client stores), where a name may be longer.
func CheckNameLengths(d *repb.Directory, where string) error {
	check := func(kind, name string) error {
		if len(name) > maxNameBytes {
			return Invalid("input root: "+kind+" "+Quote(Join(where, name)), "the name is %d bytes; Linux takes at most %d (NAME_MAX)", len(name), maxNameBytes)
		}
		return nil
	}
	for _, f := range d.Files {
		if err := check("file", f.Name); err != nil {
			return err
		}
	}
	for _, sub := range d.Directories {
		if err := check("directory", sub.Name); err != nil {
			return err
		}
	}
	for _, s := range d.Symlinks {
		if err := check("symlink", s.Name); err != nil {
			return err
		}
	}
	return nil
}
