package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

const installUsage = `usage: paddock install DIR

Copies this paddock binary to DIR/paddock (mode 0555), replacing any copy
there at once (written beside it, then renamed). The runner installer image
runs it as an init container: DIR is a volume shared with the runner
container, whose image is a toolchain (an RBE image, say) that has no
paddock of its own, so the runner runs from DIR/paddock and actions without
a container-image get the toolchain as their root.
`

// runInstall is `paddock install DIR`; the binary is static, so the copy
// runs in any image.
func runInstall(args []string) error {
	fs := flag.NewFlagSet("install", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), installUsage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("want one DIR")
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find this binary: %w", err)
	}
	dst, err := installBinary(self, fs.Arg(0))
	if err != nil {
		return err
	}
	fmt.Printf("paddock installed at %s\n", dst)
	return nil
}

// installBinary copies the file src to dir/paddock, atomically: a runner
// container that starts while an installer from an earlier pod start is
// still copying finds the old binary or the new one, never half of one.
func installBinary(src, dir string) (string, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", fmt.Errorf("install: %w", err)
	}
	defer in.Close()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("install: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".paddock-")
	if err != nil {
		return "", fmt.Errorf("install: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		return "", fmt.Errorf("install: copy: %w", err)
	}
	if err := tmp.Chmod(0o555); err != nil {
		tmp.Close()
		return "", fmt.Errorf("install: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", fmt.Errorf("install: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("install: %w", err)
	}
	dst := filepath.Join(dir, "paddock")
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return "", fmt.Errorf("install: %w", err)
	}
	return dst, nil
}
