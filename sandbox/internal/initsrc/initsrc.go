// Package initsrc fingerprints the sources of the sandbox init, so that a
// test can tell whether the compiled init in sandbox/internal/initbin is
// stale. It is apart from initbin because the generator that writes the
// compiled init must build before that file exists.
package initsrc

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// SourceDirs are the packages (relative to the module root) compiled into
// the init: every package of this module it imports, directly or not
// (initbin's tests check that against the go tool).
var SourceDirs = []string{"internal/wirecodec", "sandbox/internal/initplan", "sandbox/internal/initprog"}

// SourcesDigest hashes the init's sources under moduleRoot: every non-test
// Go file of SourceDirs, and the go.mod requirement of golang.org/x/sys.
// It does not depend on the Go toolchain, so the freshness check holds on
// any machine.
func SourcesDigest(moduleRoot string) (string, error) {
	var files []string
	for _, d := range SourceDirs {
		ents, err := os.ReadDir(filepath.Join(moduleRoot, d))
		if err != nil {
			return "", err
		}
		for _, e := range ents {
			if n := e.Name(); strings.HasSuffix(n, ".go") && !strings.HasSuffix(n, "_test.go") {
				files = append(files, d+"/"+n)
			}
		}
	}
	sort.Strings(files)
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(moduleRoot, f))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", f, len(b))
		h.Write(b)
	}
	mod, err := os.ReadFile(filepath.Join(moduleRoot, "go.mod"))
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(mod), "\n") {
		if strings.Contains(line, "golang.org/x/sys ") {
			fmt.Fprintf(h, "%s\n", strings.TrimSpace(line))
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
