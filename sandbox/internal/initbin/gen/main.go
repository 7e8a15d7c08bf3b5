// Command gen compiles the sandbox init (sandbox/internal/initprog, C
// without a C library) for linux/amd64 into sandbox/internal/initbin and
// records the digest of its sources (`make init`; run from the module
// root). It needs a C compiler for x86_64 Linux and the kernel's UAPI
// headers (Debian: gcc, linux-libc-dev); building paddock does not, since
// the compiled init is committed.
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
	srcs, err := filepath.Glob(filepath.Join(initsrc.Dir, "*.c"))
	if err != nil {
		return err
	}
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "cc"
	}
	cmd := exec.Command(cc, append(append([]string(nil), initsrc.CFlags...), append([]string{"-o", out}, srcs...)...)...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w", cc, err)
	}
	digest, err := initsrc.SourcesDigest(".")
	if err != nil {
		return err
	}
	return os.WriteFile(out+".sources", []byte(digest+"\n"), 0o644)
}
