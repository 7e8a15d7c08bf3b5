// Package unixsock clears the way for a listener on a UNIX socket path.
package unixsock

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"syscall"
	"time"
)

// RemoveStale removes the socket at path if nothing listens on it (one
// left by a process that crashed), so that a new listener can take its
// place. A socket a live process serves is refused, not replaced: the
// runner's and the HTTP listeners' paths used to be taken over silently,
// and removed again at exit, cutting the process that served them off
// from its clients. A path that is not a socket is refused too; a
// missing one is fine.
func RemoveStale(path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s is in use: a running process listens on it (stop it, or choose another path)", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%s: cannot tell whether it is in use: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	return nil
}
