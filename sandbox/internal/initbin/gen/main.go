// Command gen compiles the sandbox init for linux/amd64 into
// sandbox/internal/initbin and records the digest of its sources (`make
// init`; run from the module root).
package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/paddock-build/paddock/sandbox/internal/initsrc"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "initbin gen:", err)
		os.Exit(1)
	}
}

func run() error {
	out := filepath.Join("sandbox", "internal", "initbin", "paddock-init-amd64")
	// Reproducible: no paths, no build id, no symbols.
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", out, "./sandbox/internal/initprog")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return err
	}
	digest, err := initsrc.SourcesDigest(".")
	if err != nil {
		return err
	}
	return os.WriteFile(out+".sources", []byte(digest+"\n"), 0o644)
}
