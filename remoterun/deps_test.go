package remoterun

import (
	"slices"
	"strings"
	"testing"
)

func TestIsCompile(t *testing.T) {
	for args, want := range map[string]bool{
		"gcc -c a.c": true,
		"/usr/bin/x86_64-linux-gnu-gcc-12 -c a.c": true,
		"clang++ -O2 -c a.cc -o a.o":              true,
		"cc a.c -o a":                             false, // a link: no -c
		"gcc-ar rcs lib.a a.o":                    false,
		"sh -c gcc":                               false,
	} {
		if got := IsCompile(splitArgs(args)); got != want {
			t.Errorf("IsCompile(%q) = %v, want %v", args, got, want)
		}
	}
}

func TestDepsCommand(t *testing.T) {
	got := DepsCommand(splitArgs("g++ -c -Iinc -MD -MF a.d -MTa.o -Wp,-MD,x.d -o a.o -O2 a.cc"))
	want := splitArgs("g++ -c -Iinc -O2 a.cc -M")
	if !slices.Equal(got, want) {
		t.Errorf("DepsCommand = %q, want %q", got, want)
	}
	if o := CompileOutput(splitArgs("gcc -c a.c -o out/a.o")); o != "out/a.o" {
		t.Errorf("CompileOutput = %q", o)
	}
	if o := CompileOutput(splitArgs("gcc -c a.c -oout/a.o")); o != "out/a.o" {
		t.Errorf("CompileOutput (joined) = %q", o)
	}
}

// A compile's outputs are what gcc writes: without -o, an object per
// source in the working directory; with -MD or -MMD, the dependency file
// -MF names, or the -o file's (or the source's base name) made .d.
func TestCompileOutputs(t *testing.T) {
	for args, want := range map[string][]string{
		"gcc -c main.c":                                     {"main.o"},
		"gcc -I../include -c src/main.c":                    {"main.o"},
		"gcc -c a.c b.cc":                                   {"a.o", "b.o"},
		"gcc -c main.c -o obj/main.o":                       {"obj/main.o"},
		"gcc -MD -MF main.o.d -I inc -c main.c -o main.o":   {"main.o", "main.o.d"},
		"gcc -MMD -c main.c -o obj/main.o":                  {"obj/main.o", "obj/main.d"},
		"gcc -MD -c src/main.c":                             {"main.o", "main.d"},
		"clang -x c -include pre.h -MMD -MFdeps/m.d -c m.c": {"m.o", "deps/m.d"},
		"gcc -MF ignored.d -c main.c":                       {"main.o"},
		"gcc -c -MD a.c b.c":                                {"a.o", "b.o", "a.d", "b.d"},
		"gcc -Wp,-MD,.deps/m.d -c m.c -o m.o":               {"m.o", ".deps/m.d"},
	} {
		if got := CompileOutputs(splitArgs(args)); !slices.Equal(got, want) {
			t.Errorf("CompileOutputs(%q) = %q, want %q", args, got, want)
		}
	}
}

func TestParseMakeRule(t *testing.T) {
	out := "main.o: main.c /usr/include/stdio.h \\\n ../include/greet.h \\\n  dir\\ with\\ space/x.h\nother.o: main.c z.h\n"
	want := []string{"main.c", "/usr/include/stdio.h", "../include/greet.h", "dir with space/x.h", "z.h"}
	if got := ParseMakeRule(out); !slices.Equal(got, want) {
		t.Errorf("ParseMakeRule = %q, want %q", got, want)
	}
}

func splitArgs(s string) []string { return strings.Fields(s) }
