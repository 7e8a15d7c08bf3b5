// Package smallfile reads the small files an operator names: configs,
// policies, tokens.
package smallfile

import (
	"fmt"
	"io"
	"os"
	"syscall"
)

// MaxFileBytes bounds a config, policy or token file: they are kilobytes.
const MaxFileBytes = 16 << 20

// Read reads a regular file of at most MaxFileBytes, what naming it in
// errors. A FIFO blocked the start for good, and /dev/zero grew the
// process without end, before any signal handler could stop it.
func Read(path, what string) ([]byte, error) {
	// O_NONBLOCK: opening a FIFO would otherwise wait for a writer.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("read %s %s: not a regular file", what, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	if len(b) > MaxFileBytes {
		return nil, fmt.Errorf("read %s %s: larger than %d bytes", what, path, MaxFileBytes)
	}
	return b, nil
}
