package remoterun

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// compilerName matches the C and C++ compiler drivers whose -M output
// lists a compile's dependencies: gcc, g++, cc, c++, clang, clang++, with
// an optional target prefix (x86_64-linux-gnu-gcc) or version suffix
// (gcc-12).
var compilerName = regexp.MustCompile(`^([A-Za-z0-9_.]+-)*(gcc|g\+\+|cc|c\+\+|clang|clang\+\+)(-[0-9.]+)?$`)

// IsCompile reports whether args is a C or C++ compile (a compiler driver
// with -c), the case where the compiler can say which files it reads.
func IsCompile(args []string) bool {
	if len(args) < 2 || !compilerName.MatchString(filepath.Base(args[0])) {
		return false
	}
	for _, a := range args[1:] {
		if a == "-c" {
			return true
		}
	}
	return false
}

// DepsCommand turns a compile into the command that prints its
// dependencies as a make rule: the same driver and flags with -M, without
// the output and dependency-file options (which would write files).
func DepsCommand(args []string) []string {
	out := []string{args[0]}
	for i := 1; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-o" || a == "-MF" || a == "-MT" || a == "-MQ":
			i++ // and its value
		case strings.HasPrefix(a, "-o") || strings.HasPrefix(a, "-MF") || strings.HasPrefix(a, "-MT") || strings.HasPrefix(a, "-MQ"):
		case a == "-M" || a == "-MM" || a == "-MD" || a == "-MMD" || a == "-MP" || a == "-MG":
		case strings.HasPrefix(a, "-Wp,") && (strings.Contains(a, ",-MD,") || strings.Contains(a, ",-MMD,")):
		default:
			out = append(out, a)
		}
	}
	return append(out, "-M")
}

// CompileOutput returns the object file a compile writes with -o, or "".
func CompileOutput(args []string) string {
	for i := 1; i < len(args); i++ {
		switch {
		case args[i] == "-o" && i+1 < len(args):
			return args[i+1]
		case strings.HasPrefix(args[i], "-o") && len(args[i]) > 2:
			return args[i][2:]
		}
	}
	return ""
}

// CompileOutputs returns the files a compile writes, as gcc and clang
// name them: the -o file, or without one an object file per source named
// after it (a.c makes a.o, in the working directory); and with -MD or
// -MMD the dependency file: -MF's, or the -o file's (or else the
// source's base name) with its suffix made .d. Only the -o file had been
// asked for: `gcc -c main.c` exited 0 and wrote no main.o, and Ninja and
// CMake builds lost the .d files they read (outside probe).
func CompileOutputs(args []string) []string {
	obj := CompileOutput(args)
	var sources []string
	md, mf := false, ""
	for i := 1; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-MD" || a == "-MMD":
			md = true
		case a == "-MF" && i+1 < len(args):
			mf = args[i+1]
			i++
		case strings.HasPrefix(a, "-MF") && len(a) > 3:
			mf = a[3:]
		case strings.HasPrefix(a, "-Wp,"):
			// -Wp,-MD,FILE (or -MMD): the preprocessor writes FILE.
			wp := strings.Split(a, ",")
			for j := 1; j+1 < len(wp); j++ {
				if wp[j] == "-MD" || wp[j] == "-MMD" {
					md, mf = true, wp[j+1]
				}
			}
		case takesValue[a]:
			i++
		case !strings.HasPrefix(a, "-") && sourceSuffix[filepath.Ext(a)]:
			sources = append(sources, a)
		}
	}
	var outs []string
	if obj != "" {
		outs = append(outs, obj)
	} else {
		for _, src := range sources {
			outs = append(outs, withSuffix(filepath.Base(src), ".o"))
		}
	}
	switch {
	case !md:
	case mf != "":
		outs = append(outs, mf)
	case obj != "":
		outs = append(outs, withSuffix(obj, ".d"))
	default:
		for _, src := range sources {
			outs = append(outs, withSuffix(filepath.Base(src), ".d"))
		}
	}
	return outs
}

// withSuffix is p with its extension replaced by suffix.
func withSuffix(p, suffix string) string { return strings.TrimSuffix(p, filepath.Ext(p)) + suffix }

// sourceSuffix are the extensions gcc and clang compile to an object.
var sourceSuffix = map[string]bool{
	".c": true, ".cc": true, ".cp": true, ".cpp": true, ".cxx": true, ".c++": true, ".C": true, ".CPP": true,
	".m": true, ".mm": true, ".M": true, ".s": true, ".S": true, ".sx": true, ".i": true, ".ii": true,
}

// takesValue are the driver options whose value is the next argument.
var takesValue = map[string]bool{
	"-o": true, "-I": true, "-D": true, "-U": true, "-include": true, "-imacros": true, "-isystem": true,
	"-idirafter": true, "-iquote": true, "-iprefix": true, "-iwithprefix": true, "-iwithprefixbefore": true,
	"-isysroot": true, "-x": true, "-MT": true, "-MQ": true, "-L": true, "-Xpreprocessor": true,
	"-Xassembler": true, "-Xlinker": true, "-Xclang": true, "--param": true, "-target": true, "-arch": true,
	"-aux-info": true, "--sysroot": true,
}

// ParseMakeRule returns the prerequisites of the make rules the compiler
// prints with -M: the text after each "target:", with backslash-newline
// continuations joined and "\ " as an escaped space inside a name.
func ParseMakeRule(out string) []string {
	text := strings.ReplaceAll(out, "\\\n", " ")
	var deps []string
	seen := map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		_, rest, ok := cutTarget(line)
		if !ok {
			continue
		}
		var cur strings.Builder
		flush := func() {
			if cur.Len() > 0 && !seen[cur.String()] {
				seen[cur.String()] = true
				deps = append(deps, cur.String())
			}
			cur.Reset()
		}
		for i := 0; i < len(rest); i++ {
			switch c := rest[i]; {
			case c == '\\' && i+1 < len(rest) && rest[i+1] == ' ':
				cur.WriteByte(' ')
				i++
			case c == ' ' || c == '\t' || c == '\r':
				flush()
			default:
				cur.WriteByte(c)
			}
		}
		flush()
	}
	return deps
}

// cutTarget splits a rule at the colon that ends its target (a colon
// followed by a space or the end of the line, so that a target such as
// C:/x is not cut inside).
func cutTarget(line string) (string, string, bool) {
	for i := 0; i < len(line); i++ {
		if line[i] == ':' && (i+1 == len(line) || line[i+1] == ' ' || line[i+1] == '\t') {
			return line[:i], line[i+1:], true
		}
	}
	return "", "", false
}

// CompilerDeps runs the compile's -M form in dir and returns the files it
// reads, as the compiler reports them (relative to dir, or absolute).
func CompilerDeps(ctx context.Context, dir string, args []string) ([]string, error) {
	argv := DepsCommand(args)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("list the compile's dependencies (%s): %w\n%s", strings.Join(argv, " "), err, strings.TrimSpace(stderr.String()))
	}
	return ParseMakeRule(stdout.String()), nil
}
