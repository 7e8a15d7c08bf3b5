// Package initsrc names the sources of the sandbox init and the flags it
// is compiled with, and fingerprints them, so that a test can tell whether
// the compiled init in sandbox/internal/initbin is stale. It is apart from
// initbin because the generator that writes the compiled init must build
// before that file exists.
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

// Dir holds the init's sources (relative to the module root): C files and
// headers, compiled together.
const Dir = "sandbox/internal/initprog"

// CFlags compile the init as a static, freestanding program: no C library
// and no start-up files (it brings its own _start and the four memory
// functions compilers may call), no position independence (nothing to
// relocate at start), no stack protector (it would need the C library's
// canary), no unwind tables, no build id and no symbols (reproducible and
// small). -fno-tree-loop-distribute-patterns keeps memcpy and memset from
// being compiled into calls of themselves.
var CFlags = []string{
	"-std=gnu11", "-Os", "-Wall", "-Wextra", "-Werror",
	"-static", "-nostdlib", "-ffreestanding", "-fno-builtin", "-fno-stack-protector",
	"-fno-tree-loop-distribute-patterns", "-fno-asynchronous-unwind-tables", "-fno-unwind-tables",
	"-fno-pie", "-no-pie", "-fcf-protection=none",
	"-Wl,--build-id=none", "-Wl,-z,noexecstack", "-s",
}

// SourcesDigest hashes the init's sources under moduleRoot: every C file
// and header of Dir, and CFlags. It does not depend on the compiler, so
// the freshness check holds on any machine.
func SourcesDigest(moduleRoot string) (string, error) {
	ents, err := os.ReadDir(filepath.Join(moduleRoot, Dir))
	if err != nil {
		return "", err
	}
	var files []string
	for _, e := range ents {
		if n := e.Name(); strings.HasSuffix(n, ".c") || strings.HasSuffix(n, ".h") {
			files = append(files, n)
		}
	}
	sort.Strings(files)
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(moduleRoot, Dir, f))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s/%s %d\n", Dir, f, len(b))
		h.Write(b)
	}
	fmt.Fprintf(h, "cflags %q\n", CFlags)
	return hex.EncodeToString(h.Sum(nil)), nil
}
