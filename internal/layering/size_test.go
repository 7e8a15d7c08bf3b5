package layering

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// The limits a newcomer can read at one sitting: a file of at most
// maxFileLines lines, a function (or function literal) of at most
// maxFuncLines, from its signature to its closing brace. Tests and
// generated code are exempt.
const (
	maxFileLines = 450
	maxFuncLines = 80
)

func TestFilesAndFunctionsStaySmall(t *testing.T) {
	checked := 0
	for _, p := range listPackages(t) {
		for _, name := range append(append([]string(nil), p.GoFiles...), p.IgnoredGoFiles...) {
			if strings.HasSuffix(name, "_test.go") || !strings.HasSuffix(name, ".go") {
				continue
			}
			path := filepath.Join(p.Dir, name)
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
			if err != nil {
				t.Errorf("parse %s: %v", path, err)
				continue
			}
			if ast.IsGenerated(f) {
				continue
			}
			checked++
			rel := strings.TrimPrefix(p.ImportPath, module) + "/" + name
			for _, e := range oversized(fset, f) {
				t.Errorf("%s: %s", rel, e)
			}
		}
	}
	if checked < 100 {
		t.Fatalf("checked only %d files", checked)
	}
}

// oversized names what in f is over the limits.
func oversized(fset *token.FileSet, f *ast.File) []string {
	var over []string
	if n := fset.File(f.Pos()).LineCount(); n > maxFileLines {
		over = append(over, fmt.Sprintf("file of %d lines, over %d", n, maxFileLines))
	}
	ast.Inspect(f, func(n ast.Node) bool {
		name := "a function literal"
		switch fn := n.(type) {
		case *ast.FuncDecl:
			if fn.Body == nil {
				return true
			}
			name = fn.Name.Name
		case *ast.FuncLit:
		default:
			return true
		}
		start, end := fset.Position(n.Pos()), fset.Position(n.End())
		if lines := end.Line - start.Line + 1; lines > maxFuncLines {
			over = append(over, fmt.Sprintf("%s at line %d: %d lines, over %d", name, start.Line, lines, maxFuncLines))
		}
		return true
	})
	return over
}

func TestOversizedFindsLongFilesAndFunctions(t *testing.T) {
	long := "package p\n\nfunc f() {\n" + strings.Repeat("\t_ = 1\n", maxFuncLines) + "}\n"
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "p.go", long, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := oversized(fset, f)
	if len(got) != 1 || !strings.HasPrefix(got[0], "f at line 3: 82 lines") {
		t.Errorf("a function of %d lines: %q", maxFuncLines+2, got)
	}
	big := "package p\n" + strings.Repeat("\n", maxFileLines)
	f, err = parser.ParseFile(fset, "q.go", big, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := oversized(fset, f); len(got) != 1 || !strings.HasPrefix(got[0], "file of") {
		t.Errorf("a file of %d lines: %q", maxFileLines+1, got)
	}
}
