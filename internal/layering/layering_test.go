// Package layering holds the tests of the code's shape. Its first:
// docs/architecture.md's package map, whose "may import" column says which
// Paddock packages each package may import, is checked against the imports
// `go list` reports, so the table stays true as the code changes. The
// second (size_test.go) keeps files and functions small enough to read.
package layering

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

const module = "github.com/paddock-build/paddock/"

// packageMap is the table of docs/architecture.md's "Package map".
type packageMap struct {
	// rows maps each row's package (a row may name several) to the
	// Paddock packages it may import; nil with all set.
	rows map[string][]string
	all  map[string]bool // rows that may import everything
	// testSupport are the packages that tests alone may import.
	testSupport map[string]bool
}

// goPackage is what `go list -json` says of a package.
type goPackage struct {
	ImportPath     string
	Dir            string
	GoFiles        []string
	IgnoredGoFiles []string // left out by build constraints (other systems)
	Imports        []string
}

func TestArchitectureTableMatchesImports(t *testing.T) {
	pm := readPackageMap(t, "../../docs/architecture.md")
	pkgs := listPackages(t)
	for _, p := range pkgs {
		if len(p.GoFiles) == 0 {
			continue // tests only (e2e, deploy/kubernetes, this package)
		}
		name := strings.TrimPrefix(p.ImportPath, module)
		row := pm.rowOf(name)
		if row == "" {
			t.Errorf("%s has no row in docs/architecture.md's package map", name)
			continue
		}
		if pm.testSupport[row] || pm.all[row] {
			continue
		}
		for _, imp := range p.Imports {
			dep, ok := strings.CutPrefix(imp, module)
			if !ok {
				continue // the standard library or another module
			}
			if err := pm.allows(row, dep); err != nil {
				t.Errorf("%s imports %s: %v", name, dep, err)
			}
		}
	}
}

// allows reports why row may not import dep (nil if it may): its own
// packages, the internal/ packages that are not test support, and the
// packages its column names (with their sub-packages of the same row).
func (pm packageMap) allows(row, dep string) error {
	depRow := pm.rowOf(dep)
	switch {
	case pm.testSupport[depRow]:
		return errors.New("test support, for tests only")
	case depRow == row:
		return nil
	case strings.HasPrefix(dep, "internal/"):
		return nil
	}
	for _, a := range pm.rows[row] {
		if dep == a || strings.HasPrefix(dep, a+"/") && pm.rowOf(a) == depRow {
			return nil
		}
	}
	return errors.New("docs/architecture.md's row for " + row + " does not name it in its \"may import\" column")
}

// rowOf is the row that covers package name: its own, else the nearest
// ancestor's; "" when none does.
func (pm packageMap) rowOf(name string) string {
	for p := name; p != "."; p = parent(p) {
		if _, ok := pm.rows[p]; ok || pm.testSupport[p] {
			return p
		}
	}
	return ""
}

func parent(p string) string {
	if i := strings.LastIndex(p, "/"); i >= 0 {
		return p[:i]
	}
	return "."
}

var (
	backticked    = regexp.MustCompile("`([^`]+)`")
	parenthetical = regexp.MustCompile(`\([^)]*\)`)
)

// readPackageMap parses the table under "## Package map": | package |
// owns | may import |. The first cell names the row's packages in
// backticks; the test-support row names them in its second cell. The
// last is a list of names, each maybe followed by a remark in
// parentheses; those that are not Paddock packages (remote-apis, x/sys)
// are kept too and simply match no import.
func readPackageMap(t *testing.T, path string) packageMap {
	t.Helper()
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "\n## Package map\n")
	if !ok {
		t.Fatalf("%s: no \"## Package map\" section", path)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	pm := packageMap{rows: map[string][]string{}, all: map[string]bool{}, testSupport: map[string]bool{}}
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) != 5 || !strings.Contains(cells[1], "`") && !strings.HasPrefix(strings.TrimSpace(cells[1]), "test support") {
			continue // not a row, or the header
		}
		if strings.HasPrefix(strings.TrimSpace(cells[1]), "test support") {
			for _, m := range backticked.FindAllStringSubmatch(cells[2], -1) {
				pm.testSupport[m[1]] = true
			}
			continue
		}
		var allowed []string
		for _, item := range strings.Split(parenthetical.ReplaceAllString(cells[3], ""), ",") {
			if f := strings.Fields(item); len(f) > 0 {
				allowed = append(allowed, strings.Trim(f[0], "`"))
			}
		}
		for _, m := range backticked.FindAllStringSubmatch(cells[1], -1) {
			pm.rows[m[1]] = allowed
			pm.all[m[1]] = len(allowed) == 1 && allowed[0] == "everything"
		}
	}
	if len(pm.rows) < 20 || len(pm.testSupport) < 5 {
		t.Fatalf("%s: read only %d rows and %d test-support packages from the package map", path, len(pm.rows), len(pm.testSupport))
	}
	return pm
}

// listPackages is `go list -json ./...` of the whole module.
func listPackages(t *testing.T) []goPackage {
	t.Helper()
	cmd := exec.Command("go", "list", "-e", "-json=ImportPath,Dir,GoFiles,IgnoredGoFiles,Imports", "./...")
	cmd.Dir = "../.."
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []goPackage
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p goPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 30 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}
