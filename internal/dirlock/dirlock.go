// Package dirlock keeps two processes off one data directory. A second
// `paddock up` started on a directory in use replayed the live farm's
// journal, cleared its CAS's unfinished writes and replaced its scheduler
// socket, so the live farm's worker could not reconnect; only the second
// farm's runner noticed (its image cache is locked). Each role now locks
// its directory first, and a second one is refused before it opens
// anything.
package dirlock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// FileName is the lock file Lock makes in a directory.
const FileName = ".paddock.lock"

// Lock takes an exclusive lock on dir, which must exist, and returns what
// releases it; the kernel releases it too when the process ends, however
// it ends. what names the directory in the error for a directory another
// process holds, which gives that process's pid. The lock is an flock on
// dir/FileName, which holds the holder's pid; it is never removed (a
// removal would race with another Lock).
func Lock(dir, what string) (release func(), err error) {
	p := filepath.Join(dir, FileName)
	// Not through a symlink, and only a regular file with no other name:
	// the lock file is truncated and written, as root, and a link planted
	// in its place (symbolic or hard) must not make that write land in
	// another file.
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s %s: %w", what, dir, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink != 1 {
		f.Close()
		return nil, fmt.Errorf("lock %s %s: %s is not a regular file of its own (a link to another file?): remove it", what, dir, p)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s %s is in use by another paddock process%s: stop it first, or give this one a directory of its own", what, dir, holder(f))
		}
		return nil, fmt.Errorf("lock %s %s: %w", what, dir, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() { f.Close() }, nil // closing the file releases the lock
}

// holder is " (pid N)" from the lock file, or "" if it says nothing.
func holder(f *os.File) string {
	b := make([]byte, 32)
	n, _ := f.ReadAt(b, 0)
	pid := strings.TrimSpace(string(b[:n]))
	if _, err := strconv.Atoi(pid); err != nil {
		return ""
	}
	return " (pid " + pid + ")"
}
